//! Transactions (tx.select / commit / rollback): publishes and settlements wait for commit;
//! commit-ok goes out once the transaction's persistent messages are on disk.

use super::publish::Incoming;
use super::{publish, settle, Ctx, Fail};
use crate::broker::{AmqpError, SettleKind};
use crate::protocol::method::*;
use crate::protocol::Method;

/// What a transaction holds until commit.
#[derive(Default)]
pub struct Tx {
    pub publishes: Vec<Incoming>,
    /// (delivery tag, multiple, what to do)
    pub settles: Vec<(u64, bool, SettleKind)>,
}

pub fn select(ctx: &Ctx) -> Result<(), Fail> {
    ctx.with(|ch| {
        if ch.confirm.is_some() {
            return Err(AmqpError::precondition(
                "cannot switch from confirm to tx mode".to_string(),
            ));
        }
        ch.tx.get_or_insert_with(Tx::default);
        Ok(())
    })
    .unwrap_or(Ok(()))?;
    ctx.send(Method::TxSelectOk(TxSelectOk {}));
    Ok(())
}

pub async fn commit(ctx: &Ctx<'_>) -> Result<(), Fail> {
    let tx = take(ctx)?;
    let published = !tx.publishes.is_empty();
    for incoming in tx.publishes {
        publish::route(ctx, incoming)?;
    }
    for (delivery_tag, multiple, kind) in tx.settles {
        settle::settle_now(ctx, delivery_tag, multiple, kind)?;
    }
    ctx.with(|ch| ch.tx = Some(Tx::default()));
    if published {
        // commit-ok once the transaction's persistent messages are on disk.
        ctx.shard.sync_barrier().await?;
    }
    ctx.send(Method::TxCommitOk(TxCommitOk {}));
    Ok(())
}

pub fn rollback(ctx: &Ctx) -> Result<(), Fail> {
    take(ctx)?;
    ctx.with(|ch| ch.tx = Some(Tx::default()));
    ctx.send(Method::TxRollbackOk(TxRollbackOk {}));
    Ok(())
}

fn take(ctx: &Ctx) -> Result<Tx, AmqpError> {
    ctx.with(|ch| ch.tx.take())
        .flatten()
        .ok_or_else(|| AmqpError::precondition("channel is not transactional".to_string()))
}
