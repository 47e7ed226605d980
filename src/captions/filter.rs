//! Rejects whisper's known hallucinations: text on audio the VAD barely called speech, text
//! whisper itself thinks is no speech, stock phrases from its training data, and loops.

use super::recognizer::Hypothesis;

/// Phrases whisper produces on silence and noise (YouTube subtitle residue).
const STOCK_PHRASES: &[&str] = &[
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "you",
    "bye",
    "okay",
    "so",
    "please subscribe",
    "subtitles by the amara.org community",
    "i'm sorry",
    "oh",
];

/// Cleans `hypothesis` for publishing, or says why it must be dropped.
pub fn accept(
    hypothesis: &Hypothesis,
    mean_voice_probability: f32,
    seconds: f32,
) -> Result<String, &'static str> {
    let text = strip_annotations(&hypothesis.text);
    if !text.chars().any(char::is_alphanumeric) {
        return Err("empty");
    }
    if hypothesis.no_speech_probability > 0.6 && mean_voice_probability < 0.6 {
        return Err("whisper: no speech");
    }
    let normalized: String = text
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || *c == '\'')
        .collect();
    let normalized = normalized.split_whitespace().collect::<Vec<_>>().join(" ");
    if STOCK_PHRASES.contains(&normalized.as_str())
        && (seconds < 2.0 || mean_voice_probability < 0.7)
    {
        return Err("stock phrase on weak speech");
    }
    Ok(trim_repetition(&text))
}

/// The text of an interim hypothesis worth stabilising: annotations removed, nothing when
/// whisper itself thinks there is no speech or when only punctuation is left.
pub fn clean_interim(hypothesis: &Hypothesis) -> Option<String> {
    if hypothesis.no_speech_probability > 0.6 {
        return None;
    }
    let text = strip_annotations(&hypothesis.text);
    text.chars()
        .any(char::is_alphanumeric)
        .then(|| trim_repetition(&text))
}

/// Drops `[BLANK_AUDIO]`, `(music)`, `*laughs*` and the like.
fn strip_annotations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '[' | '(' | '*' if depth == 0 || c != '*' => depth += 1,
            '*' => depth -= 1,
            ']' | ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts a phrase of 1 to 4 words repeated more than twice in a row down to one occurrence.
fn trim_repetition(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    'outer: while i < words.len() {
        for n in 1..=4 {
            let phrase = &words[i..(i + n).min(words.len())];
            let mut repeats = 1;
            while i + (repeats + 1) * n <= words.len()
                && words[i + repeats * n..i + (repeats + 1) * n] == *phrase
            {
                repeats += 1;
            }
            if repeats > 2 {
                out.extend_from_slice(phrase);
                i += repeats * n;
                continue 'outer;
            }
        }
        out.push(words[i]);
        i += 1;
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyp(text: &str, no_speech: f32) -> Hypothesis {
        Hypothesis {
            text: text.into(),
            no_speech_probability: no_speech,
            language: "en".into(),
            ..Default::default()
        }
    }

    #[test]
    fn drops_hallucinations() {
        assert!(accept(&hyp(" [BLANK_AUDIO]", 0.1), 0.9, 3.0).is_err());
        assert!(accept(&hyp(" Thank you.", 0.2), 0.4, 1.0).is_err());
        assert!(accept(&hyp("Hello there", 0.9), 0.3, 2.0).is_err());
        assert_eq!(
            accept(&hyp(" Thank you.", 0.1), 0.95, 2.5).unwrap(),
            "Thank you.",
            "a real thank-you stays"
        );
    }

    #[test]
    fn interims_lose_annotations_and_fragments() {
        assert_eq!(clean_interim(&hyp("[", 0.1)), None);
        assert_eq!(clean_interim(&hyp("[BLANK_AUDIO", 0.1)), None);
        assert_eq!(clean_interim(&hyp(" (", 0.1)), None);
        assert_eq!(clean_interim(&hyp("Good morning", 0.9)), None);
        assert_eq!(
            clean_interim(&hyp("Good morning [music]", 0.1)).as_deref(),
            Some("Good morning")
        );
        assert!(accept(&hyp(" - .", 0.0), 0.9, 3.0).is_err());
    }

    #[test]
    fn cuts_loops_and_annotations() {
        assert_eq!(
            accept(&hyp("the the the the budget", 0.0), 0.9, 3.0).unwrap(),
            "the budget"
        );
        assert_eq!(
            accept(&hyp("send it send it send it now", 0.0), 0.9, 3.0).unwrap(),
            "send it now"
        );
        assert_eq!(
            accept(&hyp("(music) Good morning [laughs]", 0.0), 0.9, 3.0).unwrap(),
            "Good morning"
        );
        assert_eq!(
            accept(&hyp("we we agreed", 0.0), 0.9, 3.0).unwrap(),
            "we we agreed",
            "a double word is speech"
        );
    }
}
