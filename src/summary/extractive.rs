//! The offline summariser: no model, no key. Key points are the sentences whose content words
//! recur most across the meeting; decisions and action items are sentences with the phrasings
//! people use for them ("we agreed", "Maria will", "please ... by Friday"), with an owner where
//! one was named.

use std::collections::HashMap;

use super::{ActionItem, Summary};
use crate::store::Segment;

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was",
    "one", "our", "out", "has", "have", "him", "his", "how", "its", "let", "may", "new", "now",
    "see", "two", "who", "did", "get", "got", "yes", "yeah", "okay", "this", "that", "with",
    "from", "they", "them", "then", "than", "there", "their", "what", "when", "where", "which",
    "will", "would", "could", "should", "about", "into", "just", "like", "also", "very", "some",
    "more", "most", "been", "were", "your", "we're", "it's", "i'm", "let's", "think", "know",
    "going", "want", "well", "really", "right", "here", "thank", "thanks", "everyone", "today",
];

const DECISION_PHRASES: &[&str] = &[
    "we decided",
    "decided to",
    "we agreed",
    "agreed to",
    "we will",
    "we'll",
    "the plan is",
    "approved",
    "going forward",
    "let's go with",
    "final decision",
];

/// Words that start a sentence but are not a person to hand work to.
const NOT_OWNERS: &[&str] = &[
    "I", "We", "It", "The", "This", "That", "There", "They", "You", "He", "She", "Our", "Your",
    "Please", "Let's", "So", "And", "But", "Then", "Everyone", "Someone", "Who", "What",
];

struct Sentence<'a> {
    speaker: &'a str,
    text: String,
}

fn sentences(segments: &[Segment]) -> Vec<Sentence<'_>> {
    let mut out = Vec::new();
    for s in segments {
        let mut start = 0;
        let text = s.text.trim();
        for (i, c) in text.char_indices() {
            if matches!(c, '.' | '?' | '!') {
                let piece = text[start..=i].trim();
                if piece.split_whitespace().count() >= 2 {
                    out.push(Sentence {
                        speaker: &s.speaker,
                        text: piece.to_string(),
                    });
                }
                start = i + c.len_utf8();
            }
        }
        let rest = text[start..].trim();
        if rest.split_whitespace().count() >= 2 {
            out.push(Sentence {
                speaker: &s.speaker,
                text: rest.to_string(),
            });
        }
    }
    out
}

fn content_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() > 2 && !STOPWORDS.contains(&w.as_str()))
}

/// The owner of an action item in `sentence` said by `speaker`, and whether it is one at all.
fn action_owner(sentence: &str, speaker: &str) -> Option<Option<String>> {
    if sentence.ends_with('?') {
        return None;
    }
    let lower = sentence.to_lowercase();
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let first = words
        .first()?
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'');
    let second = words.get(1).map(|w| w.to_lowercase()).unwrap_or_default();
    if lower.starts_with("i will") || lower.starts_with("i'll") || lower.starts_with("i can take") {
        return Some(Some(speaker.to_string()));
    }
    let named =
        first.chars().next().is_some_and(char::is_uppercase) && !NOT_OWNERS.contains(&first);
    if named && ["will", "needs", "should", "must", "can"].contains(&second.as_str()) {
        return Some(Some(first.to_string()));
    }
    if named && words.first().is_some_and(|w| w.ends_with(',')) && second == "please" {
        return Some(Some(first.to_string()));
    }
    let asks = [
        "please ",
        "we need to ",
        "we should ",
        "someone should ",
        "action item",
    ];
    if asks
        .iter()
        .any(|a| lower.starts_with(a) || lower.contains(&format!(" {a}")))
    {
        return Some(None);
    }
    None
}

pub fn summarise(segments: &[Segment], mut summary: Summary) -> Summary {
    let sentences = sentences(segments);
    let mut frequency: HashMap<String, usize> = HashMap::new();
    for s in &sentences {
        for w in content_words(&s.text) {
            *frequency.entry(w).or_default() += 1;
        }
    }
    let mut scored: Vec<(usize, f64)> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let words: Vec<String> = content_words(&s.text).collect();
            let score = words
                .iter()
                .map(|w| (1.0 + frequency[w] as f64).ln())
                .sum::<f64>()
                / (words.len().max(1) as f64).sqrt();
            (i, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let keep = (sentences.len() / 3).clamp(1, 5).min(sentences.len());
    let mut chosen: Vec<usize> = scored.iter().take(keep).map(|s| s.0).collect();
    chosen.sort_unstable();
    summary.key_points = chosen
        .into_iter()
        .map(|i| format!("{}: {}", sentences[i].speaker, sentences[i].text))
        .collect();
    for s in &sentences {
        let lower = s.text.to_lowercase();
        if !s.text.ends_with('?') && DECISION_PHRASES.iter().any(|p| lower.contains(p)) {
            summary.decisions.push(format!("{}: {}", s.speaker, s.text));
        }
        if let Some(owner) = action_owner(&s.text, s.speaker) {
            summary.action_items.push(ActionItem {
                owner,
                text: s.text.clone(),
            });
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::analytics;

    fn seg(speaker: &str, text: &str, start: i64) -> Segment {
        Segment {
            key: start.to_string(),
            speaker: speaker.into(),
            text: text.into(),
            start_ms: start,
            end_ms: start + 2_000,
        }
    }

    #[test]
    fn decisions_and_action_items_with_owners() {
        let segments = [
            seg("sam", "The quarterly report is ready for review.", 0),
            seg(
                "ann",
                "Maria will send the updated budget to the finance team by Friday.",
                3_000,
            ),
            seg(
                "bob",
                "I'll prepare the launch slides. Can everyone hear me?",
                6_000,
            ),
            seg(
                "ann",
                "We agreed to launch the new product in March.",
                9_000,
            ),
            seg(
                "sam",
                "Please review the contract before we sign it.",
                12_000,
            ),
            seg(
                "bob",
                "The budget for the launch is the biggest risk in the budget review.",
                15_000,
            ),
        ];
        let s = summarise(&segments, analytics(&segments, &[], 20_000));
        let owners: Vec<(Option<&str>, &str)> = s
            .action_items
            .iter()
            .map(|a| (a.owner.as_deref(), a.text.as_str()))
            .collect();
        assert!(
            owners.contains(&(
                Some("Maria"),
                "Maria will send the updated budget to the finance team by Friday."
            )),
            "{owners:?}"
        );
        assert!(
            owners.contains(&(Some("bob"), "I'll prepare the launch slides.")),
            "{owners:?}"
        );
        assert!(
            owners.contains(&(None, "Please review the contract before we sign it.")),
            "{owners:?}"
        );
        assert!(
            !owners.iter().any(|o| o.1.ends_with('?')),
            "questions are not action items"
        );
        assert_eq!(
            s.decisions,
            vec!["ann: We agreed to launch the new product in March.".to_string()]
        );
        assert!(!s.key_points.is_empty() && s.key_points.len() <= 5);
        assert!(
            s.key_points.iter().any(|k| k.contains("budget")),
            "the most recurring topic is a key point: {:?}",
            s.key_points
        );
    }

    #[test]
    fn an_empty_meeting_has_no_points() {
        let s = summarise(&[], analytics(&[], &[], 0));
        assert!(s.key_points.is_empty() && s.action_items.is_empty() && s.decisions.is_empty());
    }
}
