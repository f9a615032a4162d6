//! The `define_methods!` macro: one table row per method becomes its struct,
//! ids, spec name, argument codec and its arm in every `Method` match.
//!
//! Keeping the whole protocol in one hand-written table (`spec.rs`) means a
//! method cannot get a decoder without an encoder, or an id that disagrees
//! with its name; duplicate (class, method) ids show up as unreachable match
//! arms at compile time.

/// Rust type of a wire argument type.
macro_rules! wire_type {
    (octet) => {
        u8
    };
    (short) => {
        u16
    };
    (long) => {
        u32
    };
    (longlong) => {
        u64
    };
    (timestamp) => {
        u64
    };
    (bit) => {
        bool
    };
    (shortstr) => {
        $crate::protocol::method::ShortStr
    };
    (longstr) => {
        $crate::protocol::method::LongStr
    };
    (table) => {
        $crate::protocol::table::FieldTable
    };
}

/// Proptest strategy for a wire argument type (tests only).
#[cfg(test)]
macro_rules! wire_strategy {
    (octet) => {
        proptest::prelude::any::<u8>()
    };
    (short) => {
        proptest::prelude::any::<u16>()
    };
    (long) => {
        proptest::prelude::any::<u32>()
    };
    (longlong) => {
        proptest::prelude::any::<u64>()
    };
    (timestamp) => {
        proptest::prelude::any::<u64>()
    };
    (bit) => {
        proptest::prelude::any::<bool>()
    };
    (shortstr) => {
        $crate::protocol::testutil::arb_shortstr()
    };
    (longstr) => {
        $crate::protocol::testutil::arb_longstr()
    };
    (table) => {
        $crate::protocol::testutil::arb_table()
    };
}

macro_rules! define_methods {
    ($(
        $class_id:literal $class_name:literal {
            $( $method_id:literal $Name:ident $name:literal { $( $field:ident : $ty:ident ),* $(,)? } )*
        }
    )*) => {
        $($(
            #[doc = concat!("`", $name, "` (", stringify!($class_id), "/", stringify!($method_id), ").")]
            #[derive(Debug, Clone, PartialEq, Default)]
            pub struct $Name {
                $( pub $field: wire_type!($ty), )*
            }

            impl $Name {
                pub const CLASS_ID: u16 = $class_id;
                pub const METHOD_ID: u16 = $method_id;
                pub const NAME: &'static str = $name;

                #[inline]
                #[allow(unused_variables)]
                fn decode_args(r: &mut Reader) -> Result<$Name, MethodError> {
                    Ok($Name { $( $field: r.$ty()?, )* })
                }

                #[inline]
                #[allow(unused_variables)]
                fn encode_args(&self, w: &mut Writer<'_>) {
                    $( w.$ty(&self.$field); )*
                }
            }

            impl From<$Name> for Method {
                #[inline]
                fn from(m: $Name) -> Method {
                    Method::$Name(m)
                }
            }
        )*)*

        /// A decoded method frame: one variant per method of the spec,
        /// each wrapping the struct of the same name.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Method {
            $($( $Name($Name), )*)*
        }

        impl Method {
            /// Decodes a method frame's payload (class id, method id,
            /// arguments). Strings in the result share `payload`'s memory.
            pub fn decode(payload: Bytes) -> Result<Method, MethodError> {
                let mut r = Reader::new(payload);
                let (class_id, method_id) = match (r.short(), r.short()) {
                    (Ok(c), Ok(m)) => (c, m),
                    _ => return Err(MethodError::Syntax("method frame shorter than its ids")),
                };
                let method = match (class_id, method_id) {
                    $($( ($class_id, $method_id) => Method::$Name($Name::decode_args(&mut r)?), )*)*
                    _ => return Err(MethodError::Unknown { class_id, method_id }),
                };
                r.finish()?;
                Ok(method)
            }

            /// Appends class id, method id and arguments (no frame header).
            pub fn encode(&self, out: &mut BytesMut) {
                out.put_u16(self.class_id());
                out.put_u16(self.method_id());
                let mut w = Writer::new(out);
                match self {
                    $($( Method::$Name(m) => m.encode_args(&mut w), )*)*
                }
            }

            pub fn class_id(&self) -> u16 {
                match self {
                    $($( Method::$Name(_) => $class_id, )*)*
                }
            }

            pub fn method_id(&self) -> u16 {
                match self {
                    $($( Method::$Name(_) => $method_id, )*)*
                }
            }

            /// The spec's name, e.g. "queue.declare-ok", for reply texts.
            pub fn name(&self) -> &'static str {
                match self {
                    $($( Method::$Name(_) => $name, )*)*
                }
            }
        }

        /// Spec name of a (class id, method id) pair, if we know it; lets
        /// an error about a frame we failed to decode still name the method.
        pub fn method_name(class_id: u16, method_id: u16) -> Option<&'static str> {
            match (class_id, method_id) {
                $($( ($class_id, $method_id) => Some($name), )*)*
                _ => None,
            }
        }

        /// Spec name of a class id ("basic"), if we know it.
        pub fn class_name(class_id: u16) -> Option<&'static str> {
            match class_id {
                $( $class_id => Some($class_name), )*
                _ => None,
            }
        }

        /// Every method with default arguments, in table order (tests).
        #[cfg(test)]
        pub(crate) fn all_defaults() -> Vec<Method> {
            vec![ $($( Method::$Name($Name::default()), )*)* ]
        }

        /// Strategy producing any method with arbitrary arguments (tests).
        #[cfg(test)]
        pub(crate) fn arb_method() -> proptest::strategy::BoxedStrategy<Method> {
            use proptest::strategy::{Just, Strategy};
            proptest::strategy::Union::new(vec![
                $($(
                    (Just(()), $( wire_strategy!($ty), )*)
                        .prop_map(|((), $( $field, )*)| Method::$Name($Name { $( $field, )* }))
                        .boxed(),
                )*)*
            ])
            .boxed()
        }
    };
}
