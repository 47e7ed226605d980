//! The meeting log: each meeting as a chat thread in the messaging store (root message,
//! attendance, transcript, summary). It opens first, so the features after it (captions) find
//! its handle in the room's shared values, and finishes last, once they have let go of it.

pub mod writer;

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::session::feature::FinishFuture;
use crate::session::{Feature, ParticipantChange, RoomContext, RoomFeature};
use crate::store::{Meeting, Store};
pub use writer::{MeetingLog, MeetingLogOptions};

/// Finals still being transcribed when the room ends hold the log; they finish within seconds.
const FINALS_GRACE: Duration = Duration::from_secs(20);

pub struct MeetingLogFeature {
    store: Store,
    options: MeetingLogOptions,
}

impl MeetingLogFeature {
    pub fn new(store: Store, options: MeetingLogOptions) -> Self {
        Self { store, options }
    }
}

impl Feature for MeetingLogFeature {
    fn name(&self) -> &'static str {
        "meeting-log"
    }

    fn open(&self, room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        let meeting =
            Meeting::new(&room.name, room.started_unix_ms as i64).with_room_sid(&room.room.sid);
        if let Some(main) = room.meeting.breakout_of.clone() {
            tokio::spawn(writer::link_breakout(
                self.store.clone(),
                self.options.bot_user.clone(),
                main,
                meeting.clone(),
            ));
        }
        let (log, task) = MeetingLog::start(self.store.clone(), meeting, self.options.clone());
        room.shared.insert(log.clone());
        Some(Box::new(RoomLog {
            log,
            task,
            timeout: self.options.flush_timeout + FINALS_GRACE,
        }))
    }
}

struct RoomLog {
    log: MeetingLog,
    /// Ends once every handle is gone and everything is written.
    task: JoinHandle<()>,
    timeout: Duration,
}

impl RoomFeature for RoomLog {
    fn on_participant(&mut self, _room: &RoomContext, change: &ParticipantChange) {
        match change {
            ParticipantChange::Joined { identity } => self.log.presence(identity, true),
            ParticipantChange::Left { identity } => self.log.presence(identity, false),
        }
    }

    fn finish(self: Box<Self>, room: &mut RoomContext) -> FinishFuture {
        room.shared.remove::<MeetingLog>();
        let name = room.name.clone();
        let Self { log, task, timeout } = *self;
        drop(log);
        Box::pin(async move {
            if tokio::time::timeout(timeout, task).await.is_err() {
                tracing::error!(room = %name, "the meeting's thread was not finished in time");
            }
        })
    }
}
