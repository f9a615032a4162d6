//! Every method of AMQP 0-9-1 with RabbitMQ's extensions, transcribed from
//! amqp-rabbitmq-0.9.1.json: `method-id Variant "spec.name" { arguments }`.
//!
//! Arguments keep spec order (the wire order) and spec names in snake_case;
//! the one exception is exchange.declare's `type`, spelled `kind` as in
//! `BasicProperties`. Deprecated `ticket`/reserved arguments stay so that
//! whatever a client sends re-encodes byte for byte. Domains are resolved to
//! wire types (exchange-name -> shortstr, message-count -> long, ...).

use bytes::{BufMut, Bytes, BytesMut};

use super::MethodError;
use crate::protocol::wire::{Reader, Writer};

define_methods! {
    10 "connection" {
        10 ConnectionStart "connection.start" { version_major: octet, version_minor: octet, server_properties: table, mechanisms: longstr, locales: longstr }
        11 ConnectionStartOk "connection.start-ok" { client_properties: table, mechanism: shortstr, response: longstr, locale: shortstr }
        20 ConnectionSecure "connection.secure" { challenge: longstr }
        21 ConnectionSecureOk "connection.secure-ok" { response: longstr }
        30 ConnectionTune "connection.tune" { channel_max: short, frame_max: long, heartbeat: short }
        31 ConnectionTuneOk "connection.tune-ok" { channel_max: short, frame_max: long, heartbeat: short }
        40 ConnectionOpen "connection.open" { virtual_host: shortstr, capabilities: shortstr, insist: bit }
        41 ConnectionOpenOk "connection.open-ok" { known_hosts: shortstr }
        50 ConnectionClose "connection.close" { reply_code: short, reply_text: shortstr, class_id: short, method_id: short }
        51 ConnectionCloseOk "connection.close-ok" {}
        60 ConnectionBlocked "connection.blocked" { reason: shortstr }
        61 ConnectionUnblocked "connection.unblocked" {}
        70 ConnectionUpdateSecret "connection.update-secret" { new_secret: longstr, reason: shortstr }
        71 ConnectionUpdateSecretOk "connection.update-secret-ok" {}
    }
    20 "channel" {
        10 ChannelOpen "channel.open" { out_of_band: shortstr }
        11 ChannelOpenOk "channel.open-ok" { channel_id: longstr }
        20 ChannelFlow "channel.flow" { active: bit }
        21 ChannelFlowOk "channel.flow-ok" { active: bit }
        40 ChannelClose "channel.close" { reply_code: short, reply_text: shortstr, class_id: short, method_id: short }
        41 ChannelCloseOk "channel.close-ok" {}
    }
    30 "access" {
        10 AccessRequest "access.request" { realm: shortstr, exclusive: bit, passive: bit, active: bit, write: bit, read: bit }
        11 AccessRequestOk "access.request-ok" { ticket: short }
    }
    40 "exchange" {
        10 ExchangeDeclare "exchange.declare" { ticket: short, exchange: shortstr, kind: shortstr, passive: bit, durable: bit, auto_delete: bit, internal: bit, nowait: bit, arguments: table }
        11 ExchangeDeclareOk "exchange.declare-ok" {}
        20 ExchangeDelete "exchange.delete" { ticket: short, exchange: shortstr, if_unused: bit, nowait: bit }
        21 ExchangeDeleteOk "exchange.delete-ok" {}
        30 ExchangeBind "exchange.bind" { ticket: short, destination: shortstr, source: shortstr, routing_key: shortstr, nowait: bit, arguments: table }
        31 ExchangeBindOk "exchange.bind-ok" {}
        40 ExchangeUnbind "exchange.unbind" { ticket: short, destination: shortstr, source: shortstr, routing_key: shortstr, nowait: bit, arguments: table }
        // 51, not 41: RabbitMQ's assignment, which clients depend on.
        51 ExchangeUnbindOk "exchange.unbind-ok" {}
    }
    50 "queue" {
        10 QueueDeclare "queue.declare" { ticket: short, queue: shortstr, passive: bit, durable: bit, exclusive: bit, auto_delete: bit, nowait: bit, arguments: table }
        11 QueueDeclareOk "queue.declare-ok" { queue: shortstr, message_count: long, consumer_count: long }
        20 QueueBind "queue.bind" { ticket: short, queue: shortstr, exchange: shortstr, routing_key: shortstr, nowait: bit, arguments: table }
        21 QueueBindOk "queue.bind-ok" {}
        30 QueuePurge "queue.purge" { ticket: short, queue: shortstr, nowait: bit }
        31 QueuePurgeOk "queue.purge-ok" { message_count: long }
        40 QueueDelete "queue.delete" { ticket: short, queue: shortstr, if_unused: bit, if_empty: bit, nowait: bit }
        41 QueueDeleteOk "queue.delete-ok" { message_count: long }
        50 QueueUnbind "queue.unbind" { ticket: short, queue: shortstr, exchange: shortstr, routing_key: shortstr, arguments: table }
        51 QueueUnbindOk "queue.unbind-ok" {}
    }
    60 "basic" {
        10 BasicQos "basic.qos" { prefetch_size: long, prefetch_count: short, global: bit }
        11 BasicQosOk "basic.qos-ok" {}
        20 BasicConsume "basic.consume" { ticket: short, queue: shortstr, consumer_tag: shortstr, no_local: bit, no_ack: bit, exclusive: bit, nowait: bit, arguments: table }
        21 BasicConsumeOk "basic.consume-ok" { consumer_tag: shortstr }
        30 BasicCancel "basic.cancel" { consumer_tag: shortstr, nowait: bit }
        31 BasicCancelOk "basic.cancel-ok" { consumer_tag: shortstr }
        40 BasicPublish "basic.publish" { ticket: short, exchange: shortstr, routing_key: shortstr, mandatory: bit, immediate: bit }
        50 BasicReturn "basic.return" { reply_code: short, reply_text: shortstr, exchange: shortstr, routing_key: shortstr }
        60 BasicDeliver "basic.deliver" { consumer_tag: shortstr, delivery_tag: longlong, redelivered: bit, exchange: shortstr, routing_key: shortstr }
        70 BasicGet "basic.get" { ticket: short, queue: shortstr, no_ack: bit }
        71 BasicGetOk "basic.get-ok" { delivery_tag: longlong, redelivered: bit, exchange: shortstr, routing_key: shortstr, message_count: long }
        72 BasicGetEmpty "basic.get-empty" { cluster_id: shortstr }
        80 BasicAck "basic.ack" { delivery_tag: longlong, multiple: bit }
        90 BasicReject "basic.reject" { delivery_tag: longlong, requeue: bit }
        100 BasicRecoverAsync "basic.recover-async" { requeue: bit }
        110 BasicRecover "basic.recover" { requeue: bit }
        111 BasicRecoverOk "basic.recover-ok" {}
        120 BasicNack "basic.nack" { delivery_tag: longlong, multiple: bit, requeue: bit }
    }
    85 "confirm" {
        10 ConfirmSelect "confirm.select" { nowait: bit }
        11 ConfirmSelectOk "confirm.select-ok" {}
    }
    90 "tx" {
        10 TxSelect "tx.select" {}
        11 TxSelectOk "tx.select-ok" {}
        20 TxCommit "tx.commit" {}
        21 TxCommitOk "tx.commit-ok" {}
        30 TxRollback "tx.rollback" {}
        31 TxRollbackOk "tx.rollback-ok" {}
    }
}
