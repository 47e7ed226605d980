//! Full-text search over transcripts and chat messages: SQLite FTS5 (bm25) or PostgreSQL
//! tsvector (ts_rank), filtered by room, speaker and time, ranked, with highlighted snippets.
//!
//! Only meeting threads are searched: messages joined to a meeting this agent recorded. Other
//! rows of `messages` (in PostgreSQL, the platform's own chat: direct messages, other
//! conversations) are never returned.

use serde::Serialize;

use super::{Store, StoreError, on_both};

#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Words to find (all of them, stemmed); any text is safe here.
    pub text: String,
    pub room: Option<String>,
    /// A speaker (transcripts) or sender (messages).
    pub speaker: Option<String>,
    /// Unix ms, inclusive.
    pub since_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<i64>,
    pub limit: i64,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// `transcript` or the message's kind.
    pub kind: String,
    /// The meeting (transcripts) or conversation (messages).
    pub conversation: String,
    pub room: Option<String>,
    pub speaker: String,
    /// When it was said or posted, Unix ms.
    pub at_ms: i64,
    /// Into the meeting, for transcripts.
    pub offset_ms: Option<i64>,
    /// The matching passage, matches in [brackets].
    pub snippet: String,
    /// Higher is better.
    pub score: f64,
}

type HitRow = (
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<i64>,
    String,
    f64,
);

/// An FTS5 query matching every word of `text`: each word quoted, so operators and
/// punctuation in user input are plain text.
fn fts5_query(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Store {
    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>, StoreError> {
        let limit = if q.limit <= 0 { 20 } else { q.limit };
        let fts = fts5_query(&q.text);
        if matches!(self, Store::Sqlite(_)) && fts.is_empty() {
            return Ok(Vec::new());
        }
        let transcripts: Vec<HitRow> = on_both!(
            self,
            fetch_all,
            HitRow,
            "SELECT 'transcript', s.meeting_id, s.room, s.speaker, s.spoken_at, s.start_ms,
                    snippet(segments_fts, 0, '[', ']', '…', 16), -bm25(segments_fts)
             FROM segments_fts JOIN transcript_segments s ON s.rowid = segments_fts.rowid
             WHERE segments_fts MATCH ?1
               AND (?2 IS NULL OR s.room = ?2) AND (?3 IS NULL OR s.speaker = ?3)
               AND (?4 IS NULL OR s.spoken_at >= ?4) AND (?5 IS NULL OR s.spoken_at < ?5)
             ORDER BY bm25(segments_fts) LIMIT ?6",
            "SELECT 'transcript', s.meeting_id, s.room, s.speaker,
                    (extract(epoch from s.spoken_at) * 1000)::bigint, s.start_ms,
                    ts_headline('english', s.text, q, 'StartSel=[, StopSel=], MaxWords=24, MinWords=6'),
                    ts_rank(s.tsv, q)::float8
             FROM transcript_segments s, plainto_tsquery('english', $1) q
             WHERE s.tsv @@ q
               AND ($2::text IS NULL OR s.room = $2) AND ($3::text IS NULL OR s.speaker = $3)
               AND ($4::bigint IS NULL OR s.spoken_at >= to_timestamp($4::bigint / 1000.0))
               AND ($5::bigint IS NULL OR s.spoken_at < to_timestamp($5::bigint / 1000.0))
             ORDER BY ts_rank(s.tsv, q) DESC LIMIT $6",
            if matches!(self, Store::Sqlite(_)) { &fts } else { &q.text },
            &q.room,
            &q.speaker,
            q.since_ms,
            q.until_ms,
            limit,
        )?;
        let messages: Vec<HitRow> = on_both!(
            self,
            fetch_all,
            HitRow,
            "SELECT m.kind, m.conversation_id, mt.room, m.sender_id, m.created_at, NULL,
                    snippet(messages_fts, 0, '[', ']', '…', 16), -bm25(messages_fts)
             FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid
             JOIN meetings mt ON mt.id = m.conversation_id
             WHERE messages_fts MATCH ?1 AND m.kind <> 'transcript'
               AND (?2 IS NULL OR mt.room = ?2) AND (?3 IS NULL OR m.sender_id = ?3)
               AND (?4 IS NULL OR m.created_at >= ?4) AND (?5 IS NULL OR m.created_at < ?5)
             ORDER BY bm25(messages_fts) LIMIT ?6",
            "SELECT m.kind, m.conversation_id, mt.room, m.sender_id,
                    (extract(epoch from m.created_at) * 1000)::bigint, NULL::bigint,
                    ts_headline('english', m.text, q, 'StartSel=[, StopSel=], MaxWords=24, MinWords=6'),
                    ts_rank(m.tsv, q)::float8
             FROM messages m JOIN meetings mt ON mt.id = m.conversation_id,
                  plainto_tsquery('english', $1) q
             WHERE m.tsv @@ q AND m.kind <> 'transcript'
               AND ($2::text IS NULL OR mt.room = $2) AND ($3::text IS NULL OR m.sender_id = $3)
               AND ($4::bigint IS NULL OR m.created_at >= to_timestamp($4::bigint / 1000.0))
               AND ($5::bigint IS NULL OR m.created_at < to_timestamp($5::bigint / 1000.0))
             ORDER BY ts_rank(m.tsv, q) DESC LIMIT $6",
            if matches!(self, Store::Sqlite(_)) { &fts } else { &q.text },
            &q.room,
            &q.speaker,
            q.since_ms,
            q.until_ms,
            limit,
        )?;
        let mut hits: Vec<SearchHit> = transcripts
            .into_iter()
            .chain(messages)
            .map(
                |(kind, conversation, room, speaker, at_ms, offset_ms, snippet, score)| SearchHit {
                    kind,
                    conversation,
                    room,
                    speaker,
                    at_ms,
                    offset_ms,
                    snippet,
                    score,
                },
            )
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(limit as usize);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::fts5_query;

    #[test]
    fn user_text_becomes_quoted_words() {
        assert_eq!(fts5_query("budget Friday"), r#""budget" "Friday""#);
        assert_eq!(
            fts5_query(r#"x" OR 1=1; DROP TABLE messages; --"#),
            r#""x" "OR" "1" "1" "DROP" "TABLE" "messages""#
        );
        assert_eq!(fts5_query("let's"), r#""let's""#);
        assert_eq!(fts5_query("  ;; "), "");
    }
}
