//! Caps on the media tracks the agent takes: per participant (audio and video apart) and per
//! room, so that one participant publishing many tracks cannot take a thread and a pipeline
//! for each. Tracks over a cap are ignored, counted, and logged once per participant and kind
//! (and once for the room).

use std::collections::HashMap;

use crate::livekit::TrackKind;

/// Microphones (and other audio tracks) the agent takes from one participant; more are ignored.
pub const MAX_AUDIO_TRACKS_PER_PARTICIPANT: usize = 4;
/// Cameras and screen shares the agent takes from one participant; more are ignored.
pub const MAX_VIDEO_TRACKS_PER_PARTICIPANT: usize = 4;
/// Media tracks the agent takes in one room; more are ignored.
pub const MAX_TRACKS_PER_ROOM: usize = 64;

/// Subscribed tracks ignored because a participant or the room had its cap, process-wide.
pub static TRACKS_IGNORED: std::sync::LazyLock<prometheus::IntCounter> =
    std::sync::LazyLock::new(|| {
        crate::metrics::counter(
            "meeting_agent_tracks_ignored_total",
            "Subscribed tracks ignored because a participant or room had its cap of media tracks.",
        )
    });

/// Why a track was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrackRefusal {
    Participant,
    Room,
}

/// Counts the media tracks each participant and the room hold a pipeline for, so that one
/// participant publishing many tracks cannot take a thread and a pipeline for each.
pub(super) struct TrackBudget {
    per_participant: [usize; 2],
    per_room: usize,
    /// Admitted tracks: sid -> (participant, 0 audio / 1 video).
    tracks: HashMap<String, (String, usize)>,
    counts: HashMap<(String, usize), usize>,
    /// Caps already logged: (participant, kind) once until they leave, the room's once.
    warned: std::collections::HashSet<(String, usize)>,
    room_warned: bool,
}

impl Default for TrackBudget {
    fn default() -> Self {
        Self::new(
            MAX_AUDIO_TRACKS_PER_PARTICIPANT,
            MAX_VIDEO_TRACKS_PER_PARTICIPANT,
            MAX_TRACKS_PER_ROOM,
        )
    }
}

impl TrackBudget {
    fn new(audio: usize, video: usize, room: usize) -> Self {
        Self {
            per_participant: [audio, video],
            per_room: room,
            tracks: HashMap::new(),
            counts: HashMap::new(),
            warned: Default::default(),
            room_warned: false,
        }
    }

    /// Takes `sid` into the budget (a sid already in it stays, uncounted again), or says which
    /// cap it is over and whether that is the first time the cap is met (to log it once).
    /// Tracks of unknown kind hold no pipeline and are not counted.
    pub(super) fn admit(
        &mut self,
        participant: &str,
        sid: &str,
        kind: TrackKind,
    ) -> Result<(), (TrackRefusal, bool)> {
        let k = match kind {
            TrackKind::KindAudio => 0,
            TrackKind::KindVideo => 1,
            TrackKind::KindUnknown => return Ok(()),
        };
        if self.tracks.contains_key(sid) {
            return Ok(());
        }
        let key = (participant.to_string(), k);
        let refusal = if self.counts.get(&key).copied().unwrap_or(0) >= self.per_participant[k] {
            Some((TrackRefusal::Participant, self.warned.insert(key.clone())))
        } else if self.tracks.len() >= self.per_room {
            Some((
                TrackRefusal::Room,
                !std::mem::replace(&mut self.room_warned, true),
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            TRACKS_IGNORED.inc();
            return Err(refusal);
        }
        *self.counts.entry(key).or_default() += 1;
        self.tracks
            .insert(sid.to_string(), (participant.to_string(), k));
        Ok(())
    }

    /// Gives back `sid`'s place (unsubscribed, unpublished, or its stream did not open).
    pub(super) fn release(&mut self, sid: &str) {
        if let Some(key) = self.tracks.remove(sid)
            && let Some(n) = self.counts.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&key);
            }
        }
    }

    /// Gives back every place `participant` held (they left).
    pub(super) fn release_participant(&mut self, participant: &str) {
        self.tracks.retain(|_, (p, _)| p != participant);
        self.counts.retain(|(p, _), _| p != participant);
        self.warned.retain(|(p, _)| p != participant);
    }
}

impl TrackRefusal {
    /// The cap a refused track of `kind` met, and what it counts.
    pub(super) fn cap(self, kind: TrackKind) -> (usize, &'static str) {
        match (self, kind) {
            (TrackRefusal::Room, _) => (MAX_TRACKS_PER_ROOM, "media tracks in this room"),
            (_, TrackKind::KindVideo) => (
                MAX_VIDEO_TRACKS_PER_PARTICIPANT,
                "video tracks of this participant",
            ),
            _ => (
                MAX_AUDIO_TRACKS_PER_PARTICIPANT,
                "audio tracks of this participant",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_are_capped_per_participant_and_room_and_released() {
        let mut b = TrackBudget::new(2, 1, 4);
        let ignored = || TRACKS_IGNORED.get();
        let before = ignored();
        assert_eq!(b.admit("eve", "A1", TrackKind::KindAudio), Ok(()));
        assert_eq!(b.admit("eve", "A2", TrackKind::KindAudio), Ok(()));
        // The same track subscribed again keeps its place.
        assert_eq!(b.admit("eve", "A2", TrackKind::KindAudio), Ok(()));
        // Over the participant's cap: ignored, logged the first time only.
        assert_eq!(
            b.admit("eve", "A3", TrackKind::KindAudio),
            Err((TrackRefusal::Participant, true))
        );
        assert_eq!(
            b.admit("eve", "A4", TrackKind::KindAudio),
            Err((TrackRefusal::Participant, false))
        );
        // Video has its own cap.
        assert_eq!(b.admit("eve", "V1", TrackKind::KindVideo), Ok(()));
        assert_eq!(
            b.admit("eve", "V2", TrackKind::KindVideo),
            Err((TrackRefusal::Participant, true))
        );
        assert!(ignored() >= before + 3);
        // Unknown tracks hold nothing.
        assert_eq!(b.admit("eve", "X", TrackKind::KindUnknown), Ok(()));
        // The room's cap.
        assert_eq!(b.admit("bob", "B1", TrackKind::KindAudio), Ok(()));
        assert_eq!(
            b.admit("bob", "B2", TrackKind::KindAudio),
            Err((TrackRefusal::Room, true))
        );
        assert_eq!(
            b.admit("ann", "C1", TrackKind::KindVideo),
            Err((TrackRefusal::Room, false))
        );
        // Unsubscribing gives the place back.
        b.release("A1");
        b.release("A1");
        assert_eq!(b.admit("eve", "A5", TrackKind::KindAudio), Ok(()));
        assert_eq!(b.tracks.len(), 4);
        // Leaving gives back everything, and a returning participant is logged again.
        b.release_participant("eve");
        assert_eq!(b.tracks.len(), 1);
        assert!(b.counts.keys().all(|(p, _)| p == "bob"));
        for sid in ["E1", "E2"] {
            assert_eq!(b.admit("eve", sid, TrackKind::KindAudio), Ok(()));
        }
        assert_eq!(
            b.admit("eve", "E3", TrackKind::KindAudio),
            Err((TrackRefusal::Participant, true))
        );
    }

    #[test]
    fn the_default_caps() {
        let mut b = TrackBudget::default();
        let admitted = (0..20)
            .filter(|i| {
                b.admit("many", &format!("V{i}"), TrackKind::KindVideo)
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, MAX_VIDEO_TRACKS_PER_PARTICIPANT);
        for p in 0..100 {
            let _ = b.admit(&format!("p{p}"), &format!("A{p}"), TrackKind::KindAudio);
        }
        assert_eq!(b.tracks.len(), MAX_TRACKS_PER_ROOM);
    }
}
