//! The agent's side of the meeting controls, in every room it serves: it tells hosts and
//! co-hosts who is waiting (a data message on [`WAITING_ROOM_TOPIC`]), stamps when each started
//! waiting (their `meeting.waiting_since` attribute, for clients to show), and keeps a locked
//! meeting closed to tokens minted elsewhere: who joins it without waiting and without having
//! been in before is sent to the waiting room (when it is on) or removed. Changes to other
//! participants go through LiveKit's RoomService, with the server's secret.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;

use crate::livekit::Room;
use crate::livekit::room_service::RoomService;
use crate::protocol::{MEETING_WAITING, MEETING_WAITING_SINCE, WAITING_ROOM_TOPIC};
use crate::session::{Feature, ParticipantChange, RoomContext, RoomFeature};

/// Identities the agent never turns away (other agents; the API mints no such identity).
const AGENT_PREFIX: &str = "agent-";

pub struct MeetingControls {
    pub service: RoomService,
}

impl Feature for MeetingControls {
    fn name(&self) -> &'static str {
        "meeting-controls"
    }

    fn open(&self, room: &mut RoomContext) -> Option<Box<dyn RoomFeature>> {
        Some(Box::new(RoomControls {
            service: self.service.clone(),
            // Whoever is in before the agent came was let in.
            admitted: room.attributes.keys().cloned().collect(),
            waiting: BTreeMap::new(),
        }))
    }
}

struct RoomControls {
    service: RoomService,
    /// Identities let into the meeting (in while it was open, or admitted).
    admitted: HashSet<String>,
    /// Who waits now: since when (Unix ms), and whether their attribute has said so yet (one
    /// sent to the waiting room by the agent is not admitted before its attribute is set).
    waiting: BTreeMap<String, (u64, bool)>,
}

fn waits(attributes: &HashMap<String, String>) -> bool {
    attributes.get(MEETING_WAITING).is_some_and(|v| v == "true")
}

impl RoomControls {
    /// Tells the hosts and co-hosts in the room who waits now.
    fn notify_hosts(&self, room: &RoomContext, joined: Option<&str>) {
        let hosts: Vec<String> = room
            .attributes
            .keys()
            .filter(|i| room.meeting.roles.of(i).moderates())
            .cloned()
            .collect();
        if hosts.is_empty() {
            return;
        }
        let waiting: Vec<_> = self
            .waiting
            .iter()
            .map(|(identity, (since, _))| json!({"identity": identity, "since_ms": since}))
            .collect();
        let payload = json!({"waiting": waiting, "joined": joined}).to_string();
        let live: Arc<Room> = room.room.clone();
        tokio::spawn(async move {
            if let Err(e) = live
                .publish_data(payload.as_bytes(), Some(WAITING_ROOM_TOPIC), true, &hosts)
                .await
            {
                tracing::warn!(error = %e, "cannot tell the hosts who is waiting");
            }
        });
    }

    /// `identity` starts waiting now: its attribute says since when; `restrict` also takes
    /// its rights first (one who came in with a token minted elsewhere).
    fn start_waiting(&mut self, room: &RoomContext, identity: &str, restrict: bool) {
        let since = crate::captions::journal::unix_ms();
        self.waiting
            .insert(identity.to_string(), (since, !restrict));
        let (service, name, who) = (
            self.service.clone(),
            room.name.clone(),
            identity.to_string(),
        );
        tokio::spawn(async move {
            if restrict {
                let none = json!({"can_subscribe": false, "can_publish": false, "can_publish_data": false});
                if let Err(e) = service.set_permission(&name, &who, none).await {
                    tracing::warn!(error = %e, participant = %who, "cannot send a participant to the waiting room");
                }
            }
            let attributes = HashMap::from([
                (MEETING_WAITING.to_string(), "true".to_string()),
                (MEETING_WAITING_SINCE.to_string(), since.to_string()),
            ]);
            if let Err(e) = service.set_attributes(&name, &who, &attributes).await {
                tracing::warn!(error = %e, participant = %who, "cannot stamp the waiting time");
            }
        });
        self.notify_hosts(room, Some(identity));
    }

    fn remove(&self, room: &RoomContext, identity: &str) {
        let (service, name, who) = (
            self.service.clone(),
            room.name.clone(),
            identity.to_string(),
        );
        tokio::spawn(async move {
            if let Err(e) = service.remove_participant(&name, &who).await {
                tracing::warn!(error = %e, participant = %who, "cannot remove a participant from a locked meeting");
            }
        });
    }
}

impl RoomFeature for RoomControls {
    fn on_participant(&mut self, room: &RoomContext, change: &ParticipantChange) {
        match change {
            ParticipantChange::Joined { identity } => {
                let trusted = identity.starts_with(AGENT_PREFIX)
                    || room.meeting.roles.of(identity).moderates();
                if waits(room.attributes_of(identity)) {
                    self.start_waiting(room, identity, false);
                } else if room.meeting.locked && !trusted && !self.admitted.contains(identity) {
                    if room.meeting.waiting_room.enabled {
                        tracing::info!(room = %room.name, participant = %identity, "joined a locked meeting: sent to the waiting room");
                        self.start_waiting(room, identity, true);
                    } else {
                        tracing::info!(room = %room.name, participant = %identity, "joined a locked meeting: removed");
                        self.remove(room, identity);
                    }
                } else {
                    self.admitted.insert(identity.clone());
                }
            }
            ParticipantChange::Left { identity } => {
                if self.waiting.remove(identity).is_some() {
                    self.notify_hosts(room, None);
                }
            }
        }
    }

    fn on_settings(&mut self, room: &RoomContext) {
        // Admitted: their attribute said they wait, and no longer does.
        let mut admitted = Vec::new();
        for (identity, (_, seen)) in self.waiting.iter_mut() {
            match room.attributes.get(identity).map(waits) {
                Some(true) => *seen = true,
                Some(false) if *seen => admitted.push(identity.clone()),
                _ => {}
            }
        }
        for identity in &admitted {
            self.waiting.remove(identity);
            self.admitted.insert(identity.clone());
        }
        if !admitted.is_empty() {
            self.notify_hosts(room, None);
        }
    }
}
