//! The names this agent and the room's clients agree on: participant attributes and room
//! metadata switches a client sets, the attribute the agent sets, and LiveKit's transcription
//! stream. One place, shared by the session, the control API and the fuzz targets.

/// Participant attribute (or room switch) turning noise suppression of a microphone on or off.
pub const NS_ENABLED: &str = "ns.enabled";
/// Participant attribute asking the agent to publish the denoised microphone as `<identity>-clean`.
pub const NS_CLEAN_TRACK: &str = "ns.clean_track";
/// Participant attribute (or room switch) choosing the suppression model: `rnnoise` or
/// `deepfilternet` (within the agent's budget; otherwise RNNoise, and the agent says so).
pub const NS_MODEL: &str = "ns.model";
/// Data topic of the agent's notices to a participant about the model its microphone got.
pub const NS_MODEL_TOPIC: &str = "ns.model";
/// Participant attribute (or room switch) switching captions on or off.
pub const CAPTIONS_ENABLED: &str = "captions.enabled";
/// Participant attribute (or room switch) naming the language spoken (`de`, `german`, `auto`).
pub const CAPTIONS_LANGUAGE: &str = "captions.language";
/// Participant attribute (or room switch) captioning a screen share's sound too (off by
/// default: a shared video's sound is not the presenter speaking).
pub const CAPTIONS_SCREEN_SHARE: &str = "captions.screen_share";
/// Room switch (in the room's metadata) starting and stopping the recording.
pub const RECORDING_SWITCH: &str = "recording.enabled";
/// Room switch (in the room's metadata) asking for per-participant recordings beside the
/// composite, a JSON object (or that object as a string): `{"audio": true, "identities":
/// ["alice"]}` (`features::recording::per_participant`). Set with the recording switch.
pub const RECORDING_PER_PARTICIPANT: &str = "recording.per_participant";
/// The agent's participant attribute telling everyone whether it records (`active`, `off`).
pub const RECORDING_ATTRIBUTE: &str = "recording";
/// Participant attribute asking for a virtual background: `blur`, `image` or `off`.
pub const VB_MODE: &str = "vb.mode";
/// Participant attribute: blur strength, 1..=10.
pub const VB_BLUR: &str = "vb.blur";
/// Participant attribute: the background image (`upload:<sha256>.png|jpg` or an allowed https URL).
pub const VB_IMAGE: &str = "vb.image";

/// Switches a room's metadata may carry (for the whole room; a participant's attribute of the
/// same name wins).
pub const ROOM_SWITCHES: [&str; 7] = [
    CAPTIONS_ENABLED,
    CAPTIONS_LANGUAGE,
    CAPTIONS_SCREEN_SHARE,
    NS_ENABLED,
    NS_CLEAN_TRACK,
    NS_MODEL,
    RECORDING_SWITCH,
];
/// Attributes the control API may set on a participant.
pub const PARTICIPANT_SWITCHES: [&str; 9] = [
    CAPTIONS_ENABLED,
    CAPTIONS_LANGUAGE,
    CAPTIONS_SCREEN_SHARE,
    NS_ENABLED,
    NS_CLEAN_TRACK,
    NS_MODEL,
    VB_MODE,
    VB_BLUR,
    VB_IMAGE,
];

/// LiveKit's text-stream topic for captions, as its clients read them.
pub const TRANSCRIPTION_TOPIC: &str = "lk.transcription";
/// Text-stream attributes of a caption: the track transcribed, the segment, whether final.
pub const TRANSCRIBED_TRACK_ID: &str = "lk.transcribed_track_id";
pub const SEGMENT_ID: &str = "lk.segment_id";
pub const TRANSCRIPTION_FINAL: &str = "lk.transcription_final";

/// Room metadata: the meeting's roles other than `participant`, `{identity: "host" |
/// "co-host" | "guest"}`. Only the server writes room metadata, so this is where the control
/// API reads who may do what (participant attributes can be set by participants themselves).
pub const MEETING_ROLES: &str = "meeting.roles";
/// Room metadata: the identity a host put in the spotlight (`""`: nobody); the recording shows
/// that participant large, whatever its layout.
pub const MEETING_SPOTLIGHT: &str = "meeting.spotlight";
/// Room metadata: `true` while the meeting is locked (no new tokens are minted for it).
pub const MEETING_LOCKED: &str = "meeting.locked";
/// Room metadata: the waiting room's settings (`meeting::WaitingRoom` as JSON).
pub const MEETING_WAITING_ROOM: &str = "meeting.waiting_room";
/// Participant attribute: `true` while the participant waits to be admitted (no rights yet).
pub const MEETING_WAITING: &str = "meeting.waiting";
/// Participant attribute: when the participant started waiting (Unix ms), set by the agent.
pub const MEETING_WAITING_SINCE: &str = "meeting.waiting_since";
/// Data topic of the agent's waiting-room notices to hosts and co-hosts (JSON).
pub const WAITING_ROOM_TOPIC: &str = "meeting.waiting_room";
/// Room metadata of a meeting's main room: its open breakout rooms (`meeting::breakouts`).
pub const MEETING_BREAKOUTS: &str = "meeting.breakouts";
/// Room metadata of a breakout room: the main room it belongs to.
pub const MEETING_BREAKOUT_OF: &str = "meeting.breakout_of";
/// Token attribute: the role a minted token was given (what the participant joined as).
pub const MEETING_ROLE_ATTRIBUTE: &str = "meeting.role";
