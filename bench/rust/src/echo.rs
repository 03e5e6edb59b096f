//! A bare tokio-tungstenite WebSocket echo server: the baseline of `ipc-rtt`.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::args::AnyResult;

/// Print the URL, then echo every text or binary message until killed.
pub async fn echo_server() -> AnyResult<Value> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    if ws.send(msg).await.is_err() {
                        return;
                    }
                } else if msg.is_close() {
                    return;
                }
            }
        });
    }
}
