//! The control API's OpenAPI 3.1 description, generated from the handlers' `#[utoipa::path]`
//! annotations and served without a key at [`PATH`], so a front end can generate its client.
//! A test checks it against the routes [`super::router`] declares.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Where the description is served.
pub const PATH: &str = "/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meeting-agent control API",
        description = "Meetings, transcripts, participant tokens, recordings, room settings and \
            meeting controls. Errors are `{\"error\": \"...\"}`; any call may be answered 503 \
            (with `Retry-After`) under load or past the request timeout, and a JSON body that \
            does not parse is refused before the handler runs (400, 415 or 422, plain text)."
    ),
    paths(
        super::healthz,
        super::ready,
        super::metrics_text,
        serve,
        super::webhook::webhook,
        super::meetings,
        super::transcript,
        super::quality::meeting_quality,
        super::quality::meeting_engagement,
        super::quality::usage,
        super::search,
        super::tokens::mint_token,
        super::recordings::list,
        super::recordings::link,
        super::console::media::media,
        super::console::summary,
        super::console::session,
        super::console::page,
        super::console::page_slash,
        super::console::asset,
        super::recordings::playlist,
        super::live::playlist,
        super::live::object,
        super::recordings::poster,
        super::recordings::thumbnails,
        super::recordings::delete,
        super::recordings::switch,
        super::settings::room,
        super::settings::participant,
        super::settings::upload_background,
        super::controls::mute_one,
        super::controls::release,
        super::controls::remove,
        super::controls::set_role,
        super::controls::mute_all,
        super::controls::lock,
        super::controls::spotlight,
        super::controls::audit_log,
        super::controls::waiting::settings,
        super::controls::waiting::list,
        super::controls::waiting::admit_all,
        super::controls::waiting::admit_one,
        super::controls::waiting::deny,
        super::controls::breakouts::open,
        super::controls::breakouts::list,
        super::controls::breakouts::close,
        super::controls::breakouts::move_one,
        super::controls::breakouts::broadcast,
        super::media::enqueue,
        super::media::list,
        super::media::get,
        super::media::rerun,
        super::compliance::retention,
        super::compliance::meeting_archive,
        super::compliance::conversation_archive,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::get,
        super::webhooks::update,
        super::webhooks::delete,
        super::webhooks::rotate,
        super::webhooks::deliveries,
        super::webhooks::retry,
        super::webhooks::unsubscribe,
        super::webhooks::unsubscribe_one_click,
    ),
    components(schemas(schema::ErrorBody, schema::TranscriptFormat)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "meetings", description = "Meetings, transcripts and search"),
        (name = "tokens", description = "Participant tokens for the web app"),
        (name = "recordings", description = "Recordings: list, play, delete, start and stop"),
        (name = "settings", description = "Room and participant switches, background images"),
        (name = "controls", description = "Meeting controls: mute, remove, roles, lock, audit"),
        (name = "waiting room", description = "The waiting room: settings, admit, deny"),
        (name = "breakouts", description = "Breakout rooms"),
        (name = "media messages", description = "Voice and video messages: transcripts, waveforms"),
        (name = "compliance", description = "Retention passes and compliance exports"),
        (name = "webhooks", description = "Outgoing webhooks (Standard Webhooks signatures) and e-mail follow-ups"),
        (name = "operations", description = "Health, metrics, LiveKit's webhook, this description"),
        (name = "console", description = "The web console: its page and assets, and what it reads"),
    )
)]
pub struct ApiDoc;

/// The security schemes the operations name.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let bearer = |description: &str, format: Option<&str>| {
            let mut http = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description));
            if let Some(format) = format {
                http = http.bearer_format(format);
            }
            SecurityScheme::Http(http.build())
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            bearer(
                "An operator's API key (`[[api.keys]]`), limited to its rooms",
                None,
            ),
        );
        components.add_security_scheme(
            "participant_token",
            bearer(
                "A LiveKit participant token signed by this server's LiveKit secret: for meeting \
                 controls, the caller's own, for the room the call names; elsewhere (the web \
                 console), read-only access to that token's room",
                Some("JWT"),
            ),
        );
        components.add_security_scheme(
            "livekit_webhook",
            bearer(
                "LiveKit's signature: a JWT signed with the API secret carrying the body's SHA-256",
                Some("JWT"),
            ),
        );
    }
}

/// The description as JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the description serialises")
    })
}

/// `GET /v1/openapi.json`: this description (not secret, so no key).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    summary = "This OpenAPI description",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub(super) async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json()).into_response()
}

/// Schemas of answers built with `json!` and of types outside the API module (they carry no
/// `ToSchema`); the test below checks the latter against the real types.
#[allow(dead_code)]
pub mod schema {
    use std::collections::BTreeMap;

    use serde_json::Value;
    use utoipa::{IntoResponses, ToSchema};

    /// Every refusal.
    #[derive(ToSchema)]
    pub struct ErrorBody {
        /// What went wrong, without secrets.
        pub error: String,
    }

    /// The refusal every call with an API key may get.
    #[derive(IntoResponses)]
    pub enum NoApiKey {
        #[response(status = 401, description = "No valid API key")]
        Unauthorized(ErrorBody),
    }

    #[derive(IntoResponses)]
    pub enum StoreErrors {
        #[response(status = 501, description = "No messaging store is configured")]
        NotImplemented(ErrorBody),
        #[response(status = 503, description = "The store is unavailable")]
        Unavailable(ErrorBody),
    }

    #[derive(IntoResponses)]
    pub enum RecordingErrors {
        #[response(status = 501, description = "Recording is not available")]
        NotImplemented(ErrorBody),
        #[response(
            status = 503,
            description = "Recording storage or the store is unavailable"
        )]
        Unavailable(ErrorBody),
    }

    /// A change LiveKit's RoomService did not make.
    #[derive(IntoResponses)]
    pub enum LiveKitErrors {
        #[response(
            status = 502,
            description = "The LiveKit server did not take the change"
        )]
        BadGateway(ErrorBody),
        #[response(status = 503, description = "The room's metadata kept changing; retry")]
        Unavailable(ErrorBody),
    }

    /// The refusals every meeting control may get.
    #[derive(IntoResponses)]
    pub enum ControlRefusals {
        #[response(status = 401, description = "No valid API key or participant token")]
        Unauthorized(ErrorBody),
        #[response(
            status = 403,
            description = "Another room's key or token, a caller not in the meeting, or a role \
                that does not allow it"
        )]
        Forbidden(ErrorBody),
        #[response(status = 404, description = "No such room or participant")]
        NotFound(ErrorBody),
        #[response(
            status = 502,
            description = "The LiveKit server did not take the change"
        )]
        BadGateway(ErrorBody),
        #[response(
            status = 503,
            description = "The room's metadata kept changing, the store is unavailable or the \
                process is busy; retry"
        )]
        Unavailable(ErrorBody),
    }

    /// A transcript's format (`webvtt` and `text` are accepted too).
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum TranscriptFormat {
        Vtt,
        Webvtt,
        Srt,
        Json,
        Txt,
        Text,
    }

    /// A participant token (`POST /v1/tokens`).
    #[derive(ToSchema)]
    pub struct MintedToken {
        /// The JWT the client joins LiveKit with.
        pub token: String,
        pub room: String,
        pub identity: String,
        pub role: crate::meeting::Role,
        /// The holder waits in the waiting room (the token carries no rights until admitted).
        pub waiting: bool,
        /// The waiting room's message, when waiting.
        #[schema(required = true)]
        pub waiting_message: Option<String>,
        /// Seconds.
        pub expires_in: u64,
    }

    #[derive(ToSchema)]
    pub struct RecordingLink {
        /// A presigned GET (S3) or a `file://` path.
        pub url: String,
        pub expires_in_secs: u64,
    }

    #[derive(ToSchema)]
    pub struct RecordingSwitched {
        pub room: String,
        pub recording: bool,
        /// The per-participant recordings asked for, when the request asked for some.
        pub per_participant: Option<crate::features::recording::PerParticipant>,
    }

    /// Room-wide switches; at least one.
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RoomSettings {
        #[serde(rename = "captions.enabled", default)]
        pub captions_enabled: bool,
        /// A whisper language code or name, or `auto`.
        #[serde(rename = "captions.language", default)]
        pub captions_language: String,
        /// Caption a screen share's sound too (off: it is not the presenter speaking).
        #[serde(rename = "captions.screen_share", default)]
        pub captions_screen_share: bool,
        #[serde(rename = "ns.enabled", default)]
        pub ns_enabled: bool,
        #[serde(rename = "ns.clean_track", default)]
        pub ns_clean_track: bool,
        /// The suppression model (`rnnoise` unless configured otherwise); `deepfilternet`
        /// beyond the agent's budget gets `rnnoise`.
        #[serde(rename = "ns.model", default)]
        pub ns_model: NsModel,
        #[serde(rename = "recording.enabled", default)]
        pub recording_enabled: bool,
    }

    #[derive(ToSchema)]
    pub struct RoomSettingsResult {
        pub room: String,
        /// The room's metadata after the change (`null` when it is not JSON).
        pub settings: Value,
    }

    /// A participant's switches; at least one.
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ParticipantSettings {
        #[serde(rename = "captions.enabled", default)]
        pub captions_enabled: bool,
        /// A whisper language code or name, or `auto`.
        #[serde(rename = "captions.language", default)]
        pub captions_language: String,
        /// Caption a screen share's sound too (off: it is not the presenter speaking).
        #[serde(rename = "captions.screen_share", default)]
        pub captions_screen_share: bool,
        #[serde(rename = "ns.enabled", default)]
        pub ns_enabled: bool,
        #[serde(rename = "ns.clean_track", default)]
        pub ns_clean_track: bool,
        /// The suppression model (`rnnoise` unless configured otherwise); `deepfilternet`
        /// beyond the agent's budget gets `rnnoise`.
        #[serde(rename = "ns.model", default)]
        pub ns_model: NsModel,
        #[serde(rename = "vb.mode", default)]
        pub vb_mode: VbMode,
        /// Blur strength.
        #[serde(rename = "vb.blur", default)]
        #[schema(minimum = 1, maximum = 10)]
        pub vb_blur: u8,
        /// An upload of this room (`upload:<sha256>.png|jpg`) or an allow-listed https URL.
        #[serde(rename = "vb.image", default)]
        pub vb_image: String,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum NsModel {
        Rnnoise,
        Deepfilternet,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum VbMode {
        Off,
        Blur,
        Image,
    }

    #[derive(ToSchema)]
    pub struct ParticipantSettingsResult {
        pub room: String,
        pub identity: String,
        /// The attributes set, as strings.
        pub settings: BTreeMap<String, String>,
    }

    #[derive(ToSchema)]
    pub struct BackgroundUploaded {
        /// The value for `vb.image`: `upload:<sha256>.png|jpg`.
        pub image: String,
        pub bytes: u64,
        pub width: u32,
        pub height: u32,
    }

    #[derive(ToSchema)]
    pub struct WebhookResult {
        pub handled: bool,
        /// Why not: `stale` or `duplicate`.
        #[serde(default)]
        pub reason: String,
    }

    #[derive(ToSchema)]
    pub struct MuteResult {
        pub muted_tracks: u64,
        pub keep_muted: bool,
    }

    #[derive(ToSchema)]
    pub struct MuteAllResult {
        /// Who was muted.
        pub muted: Vec<String>,
        pub keep_muted: bool,
    }

    #[derive(ToSchema)]
    pub struct Released {
        pub released: String,
    }

    #[derive(ToSchema)]
    pub struct Removed {
        pub removed: String,
    }

    #[derive(ToSchema)]
    pub struct RolesResult {
        /// Everyone with a role other than `participant`.
        pub roles: BTreeMap<String, crate::meeting::Role>,
    }

    #[derive(ToSchema)]
    pub struct Locked {
        pub locked: bool,
    }

    #[derive(ToSchema)]
    pub struct Spotlight {
        /// Who is in the spotlight; empty: nobody.
        pub spotlight: String,
    }

    #[derive(ToSchema)]
    pub struct AuditLog {
        pub room: String,
        /// Newest first, at most 1000.
        pub actions: Vec<crate::store::AuditEntry>,
    }

    #[derive(ToSchema)]
    pub struct WaitingRoomResult {
        pub waiting_room: crate::meeting::WaitingRoom,
    }

    #[derive(ToSchema)]
    pub struct Waiter {
        pub identity: String,
        pub name: String,
        /// When they started waiting, Unix ms.
        pub since_ms: i64,
    }

    #[derive(ToSchema)]
    pub struct WaitingList {
        /// Longest waiting first.
        pub waiting: Vec<Waiter>,
        /// People in the meeting (not agents, not waiting).
        pub admitted: u64,
    }

    #[derive(ToSchema)]
    pub struct Admitted {
        pub admitted: Vec<String>,
    }

    #[derive(ToSchema)]
    pub struct Denied {
        pub denied: String,
    }

    /// How a participant was moved: by LiveKit, by a token its client follows, or not at all.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum MoveHow {
        Moved,
        Token,
        Stayed,
    }

    #[derive(ToSchema)]
    pub struct BreakoutsOpened {
        pub rooms: Vec<String>,
        /// Identity -> room number (1-based).
        pub assignments: BTreeMap<String, u64>,
        pub moved: BTreeMap<String, MoveHow>,
        /// When they close by themselves (Unix ms), if a timer was set.
        #[schema(required = true)]
        pub ends_at_ms: Option<u64>,
    }

    #[derive(ToSchema)]
    pub struct BreakoutRoom {
        pub room: String,
        /// Identities in it now.
        pub present: Vec<String>,
    }

    /// The open breakouts; only `rooms` (empty) when none are open.
    #[derive(ToSchema)]
    pub struct BreakoutsList {
        pub rooms: Vec<BreakoutRoom>,
        /// Identity -> room number (1-based).
        #[serde(default)]
        pub assignments: BTreeMap<String, u64>,
        #[serde(default)]
        pub ends_at_ms: Option<u64>,
    }

    #[derive(ToSchema)]
    pub struct BreakoutsClosed {
        /// Who was brought back, and how.
        pub returned: BTreeMap<String, MoveHow>,
    }

    #[derive(ToSchema)]
    pub struct BreakoutMoved {
        pub identity: String,
        /// Where it is now.
        pub room: String,
        pub how: MoveHow,
    }

    #[derive(ToSchema)]
    pub struct MediaQueued {
        pub message_id: String,
        /// False when the message already had a job (enqueue is idempotent).
        pub queued: bool,
    }

    #[derive(ToSchema)]
    pub struct BroadcastResult {
        pub rooms_reached: u64,
    }

    /// A new endpoint: its settings and its secret, shown this once.
    #[derive(ToSchema)]
    pub struct WebhookCreated {
        #[schema(inline)]
        pub endpoint: crate::store::outbox::WebhookEndpoint,
        /// `whsec_...`: verifies `webhook-signature` (Standard Webhooks).
        pub secret: String,
    }

    #[derive(ToSchema)]
    pub struct WebhookSecret {
        pub id: String,
        /// The new `whsec_...`, shown this once.
        pub secret: String,
        /// The old secret signs beside the new one until then (Unix ms).
        pub old_secrets_expire_at_ms: i64,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    use super::*;

    const METHODS: [&str; 8] = [
        "get", "post", "put", "delete", "patch", "head", "options", "trace",
    ];

    /// `src` from just after an opening `(` to its matching `)`, skipping string literals.
    fn inside_parens(src: &str) -> &str {
        let (mut depth, mut in_string, mut escaped) = (1, false, false);
        for (i, c) in src.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                '(' if !in_string => depth += 1,
                ')' if !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        return &src[..i];
                    }
                }
                _ => {}
            }
        }
        panic!("unbalanced parentheses in router");
    }

    /// The methods a `.route(...)`'s method router names: `get(..)`, `post(..).delete(..)`.
    fn methods_in(args: &str) -> Vec<String> {
        let mut found = Vec::new();
        let (mut in_string, mut escaped) = (false, false);
        let bytes = args.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i] as char;
            if in_string {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
                i += 1;
                continue;
            }
            if c == '"' {
                in_string = true;
                i += 1;
                continue;
            }
            if c.is_ascii_alphabetic() || c == '_' {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &args[start..i];
                let called = args[i..].starts_with('(');
                let qualified = args[..start].ends_with("::");
                if called && !qualified {
                    assert_ne!(word, "any", "document each method of an `any` route");
                    if METHODS.contains(&word) {
                        found.push(word.to_uppercase());
                    }
                }
                continue;
            }
            i += 1;
        }
        found
    }

    /// (method, path, router) of every route `router` declares, read from its source; the
    /// router is the `let` the route is built in (`authenticated`, `controls`), or "" for the
    /// top level.
    fn routes_in_source() -> Vec<(String, String, String)> {
        let src = include_str!("mod.rs");
        let start = src
            .find("pub fn router(")
            .expect("fn router in src/api/mod.rs");
        let body = &src[start..];
        let body = &body[body.find('{').expect("fn router's body") + 1..];
        let body = &body[..body.find("\n}\n").expect("the end of fn router")];
        // Comment lines may hold anything, `;` included.
        let body: String = body
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !body.contains(".nest("),
            "nested routers are not read by this test"
        );
        let mut routes = Vec::new();
        let mut offset = 0;
        while let Some(at) = body[offset..].find(".route(") {
            let at = offset + at;
            let args = inside_parens(&body[at + ".route(".len()..]);
            let path = args
                .split('"')
                .nth(1)
                .expect("a route's path is a string literal");
            let statement = &body[..at];
            let statement = &statement[statement.rfind(';').map_or(0, |s| s + 1)..];
            let router = statement
                .trim_start()
                .strip_prefix("let ")
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or_default();
            let methods = methods_in(args);
            assert!(!methods.is_empty(), "no method found for {path}");
            for method in methods {
                routes.push((method, path.to_string(), router.to_string()));
            }
            offset = at + ".route(".len() + args.len();
        }
        routes
    }

    fn document() -> Value {
        serde_json::from_str(json()).expect("the served description is JSON")
    }

    /// (method, path) -> operation, for every operation the description has.
    fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
        let mut ops = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                if METHODS.contains(&method.as_str()) {
                    ops.insert((method.to_uppercase(), path.clone()), op.clone());
                }
            }
        }
        ops
    }

    #[test]
    fn the_description_has_every_route_and_only_those() {
        let routes = routes_in_source();
        assert!(
            routes.len() >= 35,
            "the router's routes were not read: {routes:?}"
        );
        let in_router: BTreeSet<_> = routes
            .iter()
            .map(|(m, p, _)| (m.clone(), p.clone()))
            .collect();
        assert_eq!(in_router.len(), routes.len(), "a route is declared twice");
        assert!(in_router.contains(&("GET".to_string(), PATH.to_string())));
        let doc = document();
        let documented: BTreeSet<_> = operations(&doc).into_keys().collect();
        let undocumented: Vec<_> = in_router.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&in_router).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routes without a #[utoipa::path] listed in ApiDoc: {undocumented:?}; \
             documented but not routed: {unrouted:?}"
        );
    }

    #[test]
    fn each_route_names_the_security_its_router_checks() {
        let ops = operations(&document());
        let schemes = |op: &Value| -> BTreeSet<String> {
            op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|requirement| requirement.as_object().expect("a requirement").keys())
                .cloned()
                .collect()
        };
        for (method, path, router) in routes_in_source() {
            let op = ops
                .get(&(method.clone(), path.clone()))
                .unwrap_or_else(|| panic!("{method} {path} is not documented"));
            let expected: &[&str] = match router.as_str() {
                // Reading routes take a participant token too (read-only, its room).
                "authenticated"
                    if crate::api::console::access::read_only_may(
                        &axum::http::Method::from_bytes(method.as_bytes()).unwrap(),
                        &path.replace("{id}", "x").replace("{name}", "init.mp4"),
                    ) =>
                {
                    &["api_key", "participant_token"]
                }
                "authenticated" => &["api_key"],
                // Either: one requirement each.
                "controls" => &["api_key", "participant_token"],
                "" if path == "/v1/livekit/webhook" => &["livekit_webhook"],
                "" => &[],
                other => panic!("a router this test does not know: {other}"),
            };
            let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(schemes(op), expected, "{method} {path}");
            if expected.len() == 2 {
                assert_eq!(op["security"].as_array().map(Vec::len), Some(2), "{path}");
            }
        }
    }

    #[test]
    fn the_description_is_openapi_3_1_and_self_contained() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let schemes = &doc["components"]["securitySchemes"];
        for name in ["api_key", "participant_token", "livekit_webhook"] {
            assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
        }
        // Every operation: a unique id, a declared tag, a success answer.
        let tags: BTreeSet<_> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        let mut ids = BTreeSet::new();
        for ((method, path), op) in operations(&doc) {
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            let tag = op["tags"][0].as_str().expect("a tag");
            assert!(tags.contains(tag), "{method} {path}: tag {tag}");
            let codes = op["responses"].as_object().unwrap();
            assert!(codes.keys().any(|c| c.starts_with('2')), "{method} {path}");
            // Every path parameter is declared.
            for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                assert!(
                    op["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{method} {path}: parameter {name}"
                );
            }
        }
        // Every reference resolves.
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        out.push(r.clone());
                    }
                    o.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .expect("a schema reference");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} is missing"
            );
        }
    }

    /// The schema's property names, and those it requires.
    fn properties(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let schema = &doc["components"]["schemas"][name];
        let props = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .cloned()
            .collect();
        let required = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        (props, required)
    }

    #[test]
    fn the_settings_bodies_name_the_switches_the_handlers_accept() {
        let doc = document();
        let switches = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            properties(&doc, "RoomSettings").0,
            switches(&crate::protocol::ROOM_SWITCHES)
        );
        assert_eq!(
            properties(&doc, "ParticipantSettings").0,
            switches(&crate::protocol::PARTICIPANT_SWITCHES)
        );
    }
}
