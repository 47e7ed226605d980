//! Incoming data streams: a text stream is announced as a room event with its reader, and read
//! whole on request.

use std::collections::HashMap;

use super::RoomError;
use crate::engine::{Engine, OwnedHandle};
use crate::proto;
use crate::proto::ffi_event::Message as Ev;
use crate::proto::ffi_request::Message as Req;

/// An incoming text stream; read it with [`TextStreamReader::read_all`].
#[derive(Debug)]
pub struct TextStreamReader {
    pub(super) handle: OwnedHandle,
    pub participant: String,
    pub stream_id: String,
    pub topic: String,
    pub attributes: HashMap<String, String>,
}

impl TextStreamReader {
    pub async fn read_all(self) -> Result<String, RoomError> {
        // The read request takes the reader's handle over; an unread reader releases it on drop.
        let reader_handle = self.handle.hand_over();
        let cb = Engine::get()?
            .call(
                "text_read_all",
                |async_id| {
                    Req::TextReadAll(proto::TextStreamReaderReadAllRequest {
                        reader_handle,
                        request_async_id: Some(async_id),
                    })
                },
                |event| match event {
                    Ev::TextStreamReaderReadAll(cb) => Some(cb),
                    _ => None,
                },
            )
            .await?;
        match cb.result {
            Some(proto::text_stream_reader_read_all_callback::Result::Content(text)) => Ok(text),
            Some(proto::text_stream_reader_read_all_callback::Result::Error(e)) => {
                Err(RoomError::Operation {
                    operation: "read text stream",
                    message: e.description,
                })
            }
            None => Ok(String::new()),
        }
    }
}
