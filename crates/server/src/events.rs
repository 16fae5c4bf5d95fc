//! Fan-out of run events: one LISTEN connection for the whole server, re-broadcast to
//! every SSE stream. Streams also poll every few seconds, so a dropped notification (or
//! a reconnecting listener) only delays events, never loses them: the event log in
//! PostgreSQL is the source of truth and Last-Event-ID replays from it.

use std::time::Duration;

use rankfit_store::events::EVENT_CHANNEL;
use rankfit_store::Pool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Uuid>,
}

impl EventHub {
    pub async fn start(pool: Pool) -> Result<Self, rankfit_store::StoreError> {
        let (tx, _) = broadcast::channel(1024);
        let hub = EventHub { tx: tx.clone() };
        tokio::spawn(async move {
            loop {
                match listen(&pool, &tx).await {
                    // The server is shutting down (the pool was closed): nothing to reconnect to.
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(_) if pool.is_closed() => return,
                    Err(e) => tracing::warn!("event listener: {e}; reconnecting in 1s"),
                    Ok(()) => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Ok(hub)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.tx.subscribe()
    }
}

async fn listen(pool: &Pool, tx: &broadcast::Sender<Uuid>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(EVENT_CHANNEL).await?;
    loop {
        let n = listener.recv().await?;
        if let Ok(id) = n.payload().parse::<Uuid>() {
            // No receivers is fine.
            let _ = tx.send(id);
        }
    }
}
