//! The control API on its own port, with its own store, as the tests call it: an operator key
//! for every room, and participant tokens minted through it. A module of the `e2e` binary,
//! included by path by `captions_e2e`.
#![allow(dead_code)]

use std::time::Duration;

use meeting_agent::api::{ApiState, router};
use meeting_agent::config::{ApiKey, Config};
use meeting_agent::store::Store;
use meeting_agent_devtools::LocalLiveKitServer;
use serde_json::{Value, json};

pub const ADMIN_KEY: &str = "controls-admin-key-0123456789";
pub const ROOM: &str = "standup";
pub const SEEN: Duration = Duration::from_secs(15);

pub struct ControlApi {
    pub url: String,
    pub client: reqwest::Client,
    pub dir: std::path::PathBuf,
    pub store: Store,
}

impl ControlApi {
    pub async fn start(server: &LocalLiveKitServer) -> Self {
        // Tests run at once in one process: each its own folder.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("controls-test-{}-{n}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite:{}", dir.join("controls.db").display()))
            .await
            .unwrap();
        let mut config = Config {
            data_dir: dir.clone(),
            ..Default::default()
        };
        config.livekit.url = server.ws_url();
        config.livekit.api_key = server.api_key.clone();
        config.livekit.api_secret = server.api_secret.clone();
        config.api.keys = vec![ApiKey {
            key: ADMIN_KEY.into(),
            rooms: vec!["*".into()],
            participant_attributes: false,
        }];
        let state = ApiState::new(&config, Some(store.clone()), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Self {
            url,
            client: reqwest::Client::new(),
            dir,
            store,
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(bearer);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, bearer: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, bearer, None).await
    }

    pub async fn put(&self, path: &str, bearer: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, bearer, Some(body))
            .await
    }

    pub async fn mint(&self, room: &str, identity: &str, role: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            "/v1/tokens",
            ADMIN_KEY,
            Some(json!({"room": room, "identity": identity, "role": role})),
        )
        .await
    }

    pub async fn token(&self, identity: &str, role: &str) -> String {
        let (status, body) = self.mint(ROOM, identity, role).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["role"], role);
        body["token"].as_str().unwrap().to_string()
    }
}
