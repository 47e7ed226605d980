//! Key points, decisions and action items from a language model, through an OpenAI-compatible
//! chat-completions endpoint or Gemini's generateContent, configured on the server (the key never
//! leaves it). Any failure (timeout, HTTP error, a reply that is not the asked-for JSON) falls back
//! to the extractive summariser, so a meeting always gets its summary.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use thiserror::Error;

use super::{ActionItem, Summary, clock};
use crate::store::Segment;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Offline, no key.
    Extractive,
    /// `POST {endpoint}/chat/completions` with `Authorization: Bearer KEY`.
    OpenAi,
    /// `POST {endpoint}/models/{model}:generateContent` with `x-goog-api-key: KEY`.
    Gemini,
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub backend: Backend,
    pub endpoint: String,
    pub model: String,
    pub api_key: String,
    pub timeout: Duration,
}

#[derive(Debug, Error)]
pub enum LlmError {
    #[error("the summary request timed out after {0:?}")]
    Timeout(Duration),
    #[error("the summary service answered HTTP {0}")]
    Status(u16),
    #[error("cannot reach the summary service: {0}")]
    Http(String),
    #[error("the summary service's reply is not the expected JSON: {0}")]
    Reply(String),
}

const INSTRUCTIONS: &str = "You summarise business meetings from their transcript. Reply with one JSON object and nothing else: {\"key_points\": [string], \"decisions\": [string], \"action_items\": [{\"owner\": string or null, \"text\": string}]}. Use the speakers' names as owners where the transcript names who will do something.";

fn transcript(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| format!("[{}] {}: {}\n", clock(s.start_ms), s.speaker, s.text))
        .collect()
}

#[derive(Deserialize)]
struct Points {
    #[serde(default)]
    key_points: Vec<String>,
    #[serde(default)]
    decisions: Vec<String>,
    #[serde(default)]
    action_items: Vec<Action>,
}

#[derive(Deserialize)]
struct Action {
    owner: Option<String>,
    text: String,
}

/// The JSON object in a model's reply (models like to wrap it in a code fence).
fn parse_points(content: &str) -> Result<Points, LlmError> {
    let start = content
        .find('{')
        .ok_or_else(|| LlmError::Reply("no JSON object".into()))?;
    let end = content
        .rfind('}')
        .ok_or_else(|| LlmError::Reply("no JSON object".into()))?;
    serde_json::from_str(&content[start..=end]).map_err(|e| LlmError::Reply(e.to_string()))
}

impl LlmConfig {
    async fn ask(&self, segments: &[Segment]) -> Result<Points, LlmError> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| LlmError::Http(e.to_string()))?;
        let base = self.endpoint.trim_end_matches('/');
        let text = transcript(segments);
        let request = match self.backend {
            Backend::OpenAi => client
                .post(format!("{base}/chat/completions"))
                .bearer_auth(&self.api_key)
                .json(&json!({
                    "model": self.model,
                    "temperature": 0,
                    "messages": [
                        {"role": "system", "content": INSTRUCTIONS},
                        {"role": "user", "content": text},
                    ],
                })),
            Backend::Gemini => client
                .post(format!("{base}/models/{}:generateContent", self.model))
                .header("x-goog-api-key", &self.api_key)
                .json(&json!({
                    "systemInstruction": {"parts": [{"text": INSTRUCTIONS}]},
                    "contents": [{"role": "user", "parts": [{"text": text}]}],
                    "generationConfig": {"temperature": 0, "responseMimeType": "application/json"},
                })),
            Backend::Extractive => return Err(LlmError::Reply("no model configured".into())),
        };
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                LlmError::Timeout(self.timeout)
            } else {
                // Without the URL: it may carry a key in a query string.
                LlmError::Http(e.without_url().to_string())
            }
        })?;
        if !response.status().is_success() {
            return Err(LlmError::Status(response.status().as_u16()));
        }
        let body: Value = response.json().await.map_err(|e| {
            if e.is_timeout() {
                LlmError::Timeout(self.timeout)
            } else {
                LlmError::Reply(e.without_url().to_string())
            }
        })?;
        let content = match self.backend {
            Backend::Gemini => &body["candidates"][0]["content"]["parts"][0]["text"],
            _ => &body["choices"][0]["message"]["content"],
        };
        parse_points(
            content
                .as_str()
                .ok_or_else(|| LlmError::Reply("no message content".into()))?,
        )
    }
}

/// Fills `summary`'s key points, decisions and action items: from the model when one is
/// configured and answers well, otherwise extractively.
pub async fn summarise(
    config: Option<&LlmConfig>,
    segments: &[Segment],
    summary: Summary,
) -> Summary {
    let Some(config) = config.filter(|c| c.backend != Backend::Extractive) else {
        return super::extractive::summarise(segments, summary);
    };
    if segments.is_empty() {
        return summary;
    }
    match config.ask(segments).await {
        Ok(points) => Summary {
            key_points: points.key_points,
            decisions: points.decisions,
            action_items: points
                .action_items
                .into_iter()
                .map(|a| ActionItem {
                    owner: a.owner.filter(|o| !o.is_empty()),
                    text: a.text,
                })
                .collect(),
            ..summary
        },
        Err(e) => {
            tracing::warn!(error = %e, "summary model unavailable; using the extractive summary");
            super::extractive::summarise(segments, summary)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_in_code_fences_parse() {
        let p = parse_points("```json\n{\"key_points\": [\"a\"], \"action_items\": [{\"owner\": null, \"text\": \"b\"}]}\n```").unwrap();
        assert_eq!(p.key_points, vec!["a"]);
        assert!(p.decisions.is_empty());
        assert_eq!(p.action_items[0].text, "b");
        assert!(parse_points("I cannot help with that").is_err());
    }
}
