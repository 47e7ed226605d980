//! Virtual backgrounds: a camera whose participant asks for one (`vb.mode`, `vb.blur`,
//! `vb.image`) is segmented, blurred or composited over an image, and republished as
//! `<identity>-vb` (see `camera`).

pub mod camera;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::livekit::{TrackKind, TrackSource};
use crate::session::feature::FinishFuture;
use crate::session::switches::ParticipantSwitches;
use crate::session::{Feature, ParticipantChange, RoomContext, RoomFeature, TrackContext};
use crate::video::background_source::SourcePolicy;
use crate::video::processor::SegmenterPool;
use camera::VbRequest;

/// Decoded camera frames waiting for the background: the newest matter, so few.
const CAMERA_QUEUE: usize = 2;
/// How long a camera may take to withdraw its `-vb` track when the room ends.
const CAMERA_FINISH: Duration = Duration::from_millis(500);

/// So `/metrics` lists them before their first event.
pub fn register_metrics() {
    for counter in [
        &camera::VB_FRAMES,
        &camera::VB_FRAMES_SKIPPED,
        &camera::VB_FRAMES_FAILED,
        &camera::VB_REPUBLISHED,
    ] {
        counter.get();
    }
}

pub struct VirtualBackgrounds {
    pub pool: Arc<SegmenterPool>,
    /// Where background images may come from (uploads of the room, allow-listed URLs).
    pub sources: Arc<SourcePolicy>,
}

impl Feature for VirtualBackgrounds {
    fn name(&self) -> &'static str {
        "virtual-backgrounds"
    }

    fn open(&self, _room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        Some(Box::new(RoomBackgrounds {
            pool: self.pool.clone(),
            sources: self.sources.clone(),
            requests: ParticipantSwitches::default(),
            cameras: HashMap::new(),
        }))
    }
}

struct RoomBackgrounds {
    pool: Arc<SegmenterPool>,
    sources: Arc<SourcePolicy>,
    /// Each participant's request, watched by its cameras.
    requests: ParticipantSwitches<VbRequest>,
    cameras: HashMap<String, JoinHandle<()>>,
}

fn request_of(room: &RoomContext, identity: &str) -> VbRequest {
    VbRequest::from_attributes(room.attributes_of(identity))
}

impl RoomFeature for RoomBackgrounds {
    fn on_participant(&mut self, _room: &RoomContext, change: &ParticipantChange) {
        if let ParticipantChange::Left { identity } = change {
            self.requests.remove(identity);
        }
    }

    fn on_track(&mut self, room: &RoomContext, track: &mut TrackContext) {
        if track.kind != TrackKind::KindVideo || track.source != TrackSource::SourceCamera {
            return;
        }
        let current = request_of(room, &track.participant);
        let request = self.requests.watch(&track.participant, current);
        let camera = camera::Camera {
            room: room.room.clone(),
            participant: track.participant.clone(),
            pool: self.pool.clone(),
            request,
            sources: self.sources.clone(),
        };
        let frames = track.video().subscribe(CAMERA_QUEUE);
        self.cameras.retain(|_, task| !task.is_finished());
        self.cameras
            .insert(track.sid.clone(), tokio::spawn(camera.run(frames)));
    }

    fn on_track_ended(&mut self, _room: &RoomContext, sid: &str) {
        // The camera ends with its frames and withdraws its track itself.
        self.cameras.remove(sid);
    }

    fn on_settings(&mut self, room: &RoomContext) {
        self.requests.refresh(|identity| request_of(room, identity));
    }

    fn finish(self: Box<Self>, _room: &mut RoomContext) -> FinishFuture {
        let Self {
            requests, cameras, ..
        } = *self;
        drop(requests);
        Box::pin(async move {
            for (_, mut task) in cameras {
                if tokio::time::timeout(CAMERA_FINISH, &mut task)
                    .await
                    .is_err()
                {
                    task.abort();
                }
            }
        })
    }
}
