//! Nodes tell each other what they made due: `NOTIFY redrive_due` with a
//! payload naming the destinations and their earliest due times
//! (`crate::wakeups`), and a connection per node that `LISTEN`s.

use std::time::Duration;

use tokio_postgres::AsyncMessage;

use super::tls;
use crate::wakeups::{self, WakeupSender};

/// The channel idle nodes listen on.
pub(super) const CHANNEL: &str = "redrive_due";

/// Announces a payload of [`wakeups::payload`] to every node (when the
/// transaction commits): `$1` the channel, `$2` the payload.
pub(super) const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// The payload announcing `due` (destination, time), if there is any.
pub(super) fn due_payload<'a>(due: impl IntoIterator<Item = (&'a str, i64)>) -> Option<String> {
    let mut due = due.into_iter().peekable();
    due.peek()?;
    Some(wakeups::payload(due))
}

/// Keeps a connection that `LISTEN`s and hands `tx` every notification's
/// payload; reconnects after a failure.
pub(super) async fn listen(config: tokio_postgres::Config, require_tls: bool, tx: WakeupSender) {
    loop {
        if tx.is_closed() {
            return;
        }
        if require_tls {
            if let Ok(tls) = tls() {
                if let Ok((client, connection)) = config.connect(tls).await {
                    listen_on(client, connection, &tx).await;
                }
            }
        } else if let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await {
            listen_on(client, connection, &tx).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(super) async fn listen_on<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    tx: &WakeupSender,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        {
            let (note_tx, mut note_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let driver = tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(n))) => {
                            if note_tx.send(n.payload().to_owned()).is_err() {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return,
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                // Listening (again): what was announced while no one listened
                // is unknown.
                tx.unknown();
                while let Some(payload) = note_rx.recv().await {
                    tx.payload(&payload);
                }
            }
            driver.abort();
        }
    }
}
