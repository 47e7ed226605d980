//! The room's events: raw engine events become [`RoomEvent`]s on a task of the room's own,
//! which takes ownership of every handle they carry and keeps the room's participants,
//! publications and subscribed tracks (`RoomState`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::data_stream::TextStreamReader;
use super::{
    ConnectionQuality, ConnectionState, DisconnectReason, ParticipantSummary, TrackKind,
    TrackSource, TrackSummary,
};
use crate::engine::{Engine, OwnedHandle, SharedHandle, release_room_event_handles};
use crate::proto;

#[derive(Debug)]
pub enum RoomEvent {
    ParticipantConnected(ParticipantSummary),
    ParticipantDisconnected {
        identity: String,
        reason: DisconnectReason,
    },
    ParticipantAttributesChanged {
        identity: String,
        attributes: HashMap<String, String>,
        changed: HashMap<String, String>,
    },
    TrackPublished(TrackSummary),
    TrackUnpublished {
        participant: String,
        sid: String,
    },
    TrackSubscribed(TrackSummary),
    TrackUnsubscribed {
        participant: String,
        sid: String,
    },
    TrackSubscriptionFailed {
        participant: String,
        sid: String,
        error: String,
    },
    TrackMuted {
        participant: String,
        sid: String,
    },
    TrackUnmuted {
        participant: String,
        sid: String,
    },
    ActiveSpeakersChanged {
        identities: Vec<String>,
    },
    ConnectionQualityChanged {
        identity: String,
        quality: ConnectionQuality,
    },
    DataReceived {
        participant: String,
        topic: Option<String>,
        payload: Vec<u8>,
        reliable: bool,
    },
    TextStream(TextStreamReader),
    TranscriptionReceived {
        participant: Option<String>,
        track_sid: Option<String>,
        segments: Vec<proto::TranscriptionSegment>,
    },
    RoomMetadataChanged {
        metadata: String,
    },
    Reconnecting,
    Reconnected,
    Disconnected {
        reason: DisconnectReason,
    },
}

/// Ended remote tracks whose handles wait for the room to close; past this, the oldest is
/// released at once (the library then warns about it when the room closes).
const MAX_ENDED_TRACKS: usize = 1024;

pub(super) struct RemoteTrackEntry {
    pub(super) handle: SharedHandle,
    pub(super) summary: TrackSummary,
}

#[derive(Default)]
pub(super) struct RoomState {
    pub(super) participants: HashMap<String, (OwnedHandle, ParticipantSummary)>,
    pub(super) publications: HashMap<String, (OwnedHandle, TrackSummary)>,
    pub(super) tracks: HashMap<String, RemoteTrackEntry>,
    /// Handles of remote tracks that ended, by track sid, kept until the room is closed.
    pub(super) ended_tracks: VecDeque<(String, SharedHandle)>,
}

impl RoomState {
    /// A remote track ended: its handle waits for the room to close.
    fn track_ended(&mut self, sid: String, entry: RemoteTrackEntry) {
        if self.ended_tracks.len() >= MAX_ENDED_TRACKS {
            self.ended_tracks.pop_front();
        }
        self.ended_tracks.push_back((sid, entry.handle));
    }

    /// Every handle, remote tracks first (ended ones included); the room's own go after.
    pub(super) fn release_all(&mut self) {
        self.tracks.clear();
        self.ended_tracks.clear();
        self.publications.clear();
        self.participants.clear();
    }
}

pub(super) fn participant_summary(info: proto::ParticipantInfo) -> ParticipantSummary {
    ParticipantSummary {
        kind: proto::ParticipantKind::try_from(info.kind)
            .unwrap_or(proto::ParticipantKind::Standard),
        attributes: info.attributes,
        identity: info.identity,
        name: info.name,
        sid: info.sid,
    }
}

pub(super) fn track_summary(participant: &str, info: proto::TrackPublicationInfo) -> TrackSummary {
    TrackSummary {
        participant: participant.to_string(),
        kind: TrackKind::try_from(info.kind).unwrap_or(TrackKind::KindUnknown),
        source: TrackSource::try_from(info.source).unwrap_or(TrackSource::SourceUnknown),
        sid: info.sid,
        name: info.name,
        width: info.width,
        height: info.height,
        muted: info.muted,
    }
}

fn attributes_map(entries: Vec<proto::AttributesEntry>) -> HashMap<String, String> {
    entries.into_iter().map(|a| (a.key, a.value)).collect()
}

/// Turns raw engine events into [`RoomEvent`]s, taking ownership of every handle they carry.
/// Moves the connection's state from `from` to `to`; from any other state nothing changes
/// (a `Reconnected` after the room was left does not bring it back).
fn move_connection(
    connection: &watch::Sender<ConnectionState>,
    from: ConnectionState,
    to: ConnectionState,
) {
    connection.send_if_modified(|state| {
        let change = *state == from;
        if change {
            *state = to;
        }
        change
    });
}

pub(super) async fn run_room_events(
    mut raw: mpsc::UnboundedReceiver<proto::room_event::Message>,
    events: mpsc::UnboundedSender<RoomEvent>,
    state: Arc<Mutex<RoomState>>,
    connection: watch::Sender<ConnectionState>,
) {
    use proto::room_event::Message as R;
    while let Some(raw_event) = raw.recv().await {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let event = match raw_event {
            R::ParticipantConnected(p) => {
                let owned = p.info;
                let summary = participant_summary(owned.info);
                st.participants.insert(
                    summary.identity.clone(),
                    (OwnedHandle::from_proto(owned.handle), summary.clone()),
                );
                Some(RoomEvent::ParticipantConnected(summary))
            }
            R::ParticipantDisconnected(p) => {
                st.participants.remove(&p.participant_identity);
                st.publications
                    .retain(|_, (_, t)| t.participant != p.participant_identity);
                let gone: Vec<String> = st
                    .tracks
                    .iter()
                    .filter(|(_, t)| t.summary.participant == p.participant_identity)
                    .map(|(sid, _)| sid.clone())
                    .collect();
                for sid in gone {
                    if let Some(entry) = st.tracks.remove(&sid) {
                        st.track_ended(sid, entry);
                    }
                }
                Some(RoomEvent::ParticipantDisconnected {
                    identity: p.participant_identity,
                    reason: DisconnectReason::try_from(p.disconnect_reason)
                        .unwrap_or(DisconnectReason::UnknownReason),
                })
            }
            R::ParticipantAttributesChanged(a) => {
                let attributes = attributes_map(a.attributes);
                if let Some((_, p)) = st.participants.get_mut(&a.participant_identity) {
                    p.attributes = attributes.clone();
                }
                Some(RoomEvent::ParticipantAttributesChanged {
                    identity: a.participant_identity,
                    attributes,
                    changed: attributes_map(a.changed_attributes),
                })
            }
            R::TrackPublished(t) => {
                let publication = t.publication;
                let summary = track_summary(&t.participant_identity, publication.info);
                st.publications.insert(
                    summary.sid.clone(),
                    (OwnedHandle::from_proto(publication.handle), summary.clone()),
                );
                Some(RoomEvent::TrackPublished(summary))
            }
            R::TrackUnpublished(t) => {
                st.publications.remove(&t.publication_sid);
                Some(RoomEvent::TrackUnpublished {
                    participant: t.participant_identity,
                    sid: t.publication_sid,
                })
            }
            R::TrackSubscribed(t) => {
                let track = t.track;
                let info = track.info;
                let summary = match st.publications.get(&info.sid) {
                    Some((_, s)) => s.clone(),
                    None => TrackSummary {
                        participant: t.participant_identity.clone(),
                        sid: info.sid.clone(),
                        name: info.name.clone(),
                        kind: TrackKind::try_from(info.kind).unwrap_or(TrackKind::KindUnknown),
                        source: TrackSource::SourceUnknown,
                        width: 0,
                        height: 0,
                        muted: info.muted,
                    },
                };
                // The library now knows this sid by the new handle only: an earlier one of
                // the same track is released now (it would not be at the close).
                st.ended_tracks.retain(|(sid, _)| *sid != info.sid);
                st.tracks.insert(
                    info.sid,
                    RemoteTrackEntry {
                        handle: Arc::new(OwnedHandle::from_proto(track.handle)),
                        summary: summary.clone(),
                    },
                );
                Some(RoomEvent::TrackSubscribed(summary))
            }
            R::TrackUnsubscribed(t) => {
                if let Some(entry) = st.tracks.remove(&t.track_sid) {
                    st.track_ended(t.track_sid.clone(), entry);
                }
                Some(RoomEvent::TrackUnsubscribed {
                    participant: t.participant_identity,
                    sid: t.track_sid,
                })
            }
            R::TrackSubscriptionFailed(t) => Some(RoomEvent::TrackSubscriptionFailed {
                participant: t.participant_identity,
                sid: t.track_sid,
                error: t.error,
            }),
            R::TrackMuted(t) => Some(RoomEvent::TrackMuted {
                participant: t.participant_identity,
                sid: t.track_sid,
            }),
            R::TrackUnmuted(t) => Some(RoomEvent::TrackUnmuted {
                participant: t.participant_identity,
                sid: t.track_sid,
            }),
            R::ActiveSpeakersChanged(a) => Some(RoomEvent::ActiveSpeakersChanged {
                identities: a.participant_identities,
            }),
            R::ConnectionQualityChanged(c) => Some(RoomEvent::ConnectionQualityChanged {
                identity: c.participant_identity,
                quality: ConnectionQuality::try_from(c.quality)
                    .unwrap_or(ConnectionQuality::QualityPoor),
            }),
            R::DataPacketReceived(d) => match d.value {
                Some(proto::data_packet_received::Value::User(user)) => {
                    let handle = OwnedHandle::from_proto(user.data.handle);
                    let info = user.data.data;
                    let payload = if info.data_ptr == 0 || info.data_len == 0 {
                        Vec::new()
                    } else {
                        // SAFETY: the engine keeps data_len bytes at data_ptr alive until `handle` drops.
                        unsafe {
                            std::slice::from_raw_parts(
                                info.data_ptr as *const u8,
                                info.data_len as usize,
                            )
                        }
                        .to_vec()
                    };
                    drop(handle);
                    Some(RoomEvent::DataReceived {
                        participant: d.participant_identity,
                        topic: user.topic,
                        payload,
                        reliable: d.kind == proto::DataPacketKind::KindReliable as i32,
                    })
                }
                _ => None,
            },
            R::TextStreamOpened(t) => {
                let reader = t.reader;
                let info = reader.info;
                Some(RoomEvent::TextStream(TextStreamReader {
                    handle: OwnedHandle::from_proto(reader.handle),
                    participant: t.participant_identity,
                    stream_id: info.stream_id,
                    topic: info.topic,
                    attributes: info.attributes,
                }))
            }
            R::TranscriptionReceived(t) => Some(RoomEvent::TranscriptionReceived {
                participant: t.participant_identity,
                track_sid: t.track_sid,
                segments: t.segments,
            }),
            R::RoomMetadataChanged(m) => Some(RoomEvent::RoomMetadataChanged {
                metadata: m.metadata,
            }),
            R::Reconnecting(_) => {
                move_connection(
                    &connection,
                    ConnectionState::Connected,
                    ConnectionState::Reconnecting,
                );
                Some(RoomEvent::Reconnecting)
            }
            R::Reconnected(_) => {
                move_connection(
                    &connection,
                    ConnectionState::Reconnecting,
                    ConnectionState::Connected,
                );
                Some(RoomEvent::Reconnected)
            }
            R::Disconnected(d) => {
                connection.send_replace(ConnectionState::Disconnected);
                Some(RoomEvent::Disconnected {
                    reason: DisconnectReason::try_from(d.reason)
                        .unwrap_or(DisconnectReason::UnknownReason),
                })
            }
            other => {
                if let Ok(engine) = Engine::get() {
                    release_room_event_handles(engine, other);
                }
                None
            }
        };
        drop(st);
        if let Some(event) = event {
            let end = matches!(event, RoomEvent::Disconnected { .. });
            if let Err(unsent) = events.send(event) {
                drop(unsent); // nobody listens; handles inside (text readers) release on drop
            }
            if end {
                break;
            }
        }
    }
}
