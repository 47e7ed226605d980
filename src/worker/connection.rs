//! The worker's WebSocket to the server's `/agent` endpoint, carrying binary protobuf
//! `WorkerMessage`s up and `ServerMessage`s down.

use futures_util::{SinkExt, StreamExt};
use livekit_protocol::{ServerMessage, WorkerMessage, server_message, worker_message};
use prost::Message as _;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Debug, Error)]
pub enum ConnectionError {
    #[error(
        "the server rejected the worker's credentials (HTTP {status}): check LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
    )]
    Unauthorized { status: u16 },
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("agent socket closed: {0}")]
    Closed(String),
    #[error("undecodable server message: {0}")]
    Decode(#[from] prost::DecodeError),
}

impl ConnectionError {
    /// Errors that retrying cannot fix.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ConnectionError::Unauthorized { .. })
    }
}

pub struct AgentSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl AgentSocket {
    pub async fn connect(ws_url: &str, token: &str) -> Result<Self, ConnectionError> {
        let url = format!("{}/agent", ws_url.trim_end_matches('/'));
        let unreachable = |message: String| ConnectionError::Unreachable {
            url: url.clone(),
            message,
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| unreachable(e.to_string()))?;
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|_| unreachable("token is not a valid header".into()))?;
        request.headers_mut().insert("Authorization", auth);
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Self { ws }),
            Err(tungstenite::Error::Http(response))
                if matches!(response.status().as_u16(), 401 | 403) =>
            {
                Err(ConnectionError::Unauthorized {
                    status: response.status().as_u16(),
                })
            }
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(unreachable(format!(
                    "HTTP {} {}",
                    response.status(),
                    body.trim()
                )))
            }
            Err(e) => Err(unreachable(e.to_string())),
        }
    }

    pub async fn send(&mut self, message: worker_message::Message) -> Result<(), ConnectionError> {
        let bytes = WorkerMessage {
            message: Some(message),
        }
        .encode_to_vec();
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| ConnectionError::Closed(e.to_string()))
    }

    /// The next server message; pings and pongs of the WebSocket layer are handled here.
    pub async fn recv(&mut self) -> Result<server_message::Message, ConnectionError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    if let Some(m) = ServerMessage::decode(bytes.as_ref())?.message {
                        return Ok(m);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(ConnectionError::Closed(
                        frame
                            .map(|f| f.reason.to_string())
                            .unwrap_or_else(|| "closed by server".into()),
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ConnectionError::Closed(e.to_string())),
                None => return Err(ConnectionError::Closed("end of stream".into())),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
