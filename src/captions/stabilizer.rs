//! LocalAgreement-2: of each new interim hypothesis, only the word prefix it shares with the
//! previous one is committed, and committed words never change or repeat, so interim captions
//! grow monotonically instead of flickering. Words whisper is confident of (every token at
//! least [`CONFIDENT`]) are committed without waiting for a second hypothesis, except the
//! hypothesis's last word, which the audio may have cut in the middle ("every" of
//! "everyone").

/// Token probability at which a word needs no second hypothesis to agree.
pub const CONFIDENT: f32 = 0.5;

#[derive(Debug, Default)]
pub struct Stabilizer {
    previous: Vec<String>,
    committed: Vec<String>,
}

impl Stabilizer {
    /// Feeds a hypothesis for the whole utterance so far; returns the committed text when it grew.
    pub fn update(&mut self, hypothesis: &str) -> Option<String> {
        self.update_with_confidence(hypothesis, &[])
    }

    /// [`Self::update`] with whisper's confidence per word of `hypothesis` (empty: unknown).
    pub fn update_with_confidence(
        &mut self,
        hypothesis: &str,
        confidence: &[f32],
    ) -> Option<String> {
        let words: Vec<String> = hypothesis.split_whitespace().map(str::to_string).collect();
        let mut agreed = self
            .previous
            .iter()
            .zip(&words)
            .take_while(|(a, b)| same_word(a, b))
            .count();
        if confidence.len() == words.len() && words.len() > 1 {
            let confident = confidence[..words.len() - 1]
                .iter()
                .take_while(|&&p| p >= CONFIDENT)
                .count();
            agreed = agreed.max(confident);
        }
        self.previous = words;
        if agreed > self.committed.len() {
            // Only extend: a later hypothesis may disagree with what is committed, which stays.
            let extension: Vec<String> = self.previous[self.committed.len()..agreed].to_vec();
            if self.previous[..self.committed.len()]
                .iter()
                .zip(&self.committed)
                .all(|(a, b)| same_word(a, b))
            {
                self.committed.extend(extension);
                return Some(self.text());
            }
        }
        None
    }

    pub fn text(&self) -> String {
        self.committed.join(" ")
    }

    pub fn reset(&mut self) {
        self.previous.clear();
        self.committed.clear();
    }
}

/// Words compare without case and trailing punctuation: "meeting," and "meeting" agree.
fn same_word(a: &str, b: &str) -> bool {
    let strip = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_what_two_hypotheses_share() {
        let mut s = Stabilizer::default();
        assert_eq!(s.update("good morning"), None);
        assert_eq!(s.update("good morning every"), Some("good morning".into()));
        assert_eq!(
            s.update("good morning everyone let's"),
            None,
            "'every' vs 'everyone' disagree"
        );
        assert_eq!(
            s.update("good morning everyone let's review"),
            Some("good morning everyone let's".into())
        );
        // A later hypothesis that rewrites committed words does not take them back.
        assert_eq!(s.update("could morning everyone"), None);
        assert_eq!(s.text(), "good morning everyone let's");
    }

    #[test]
    fn confident_words_need_no_second_hypothesis() {
        let mut s = Stabilizer::default();
        // The last word may be cut: never committed on confidence alone.
        assert_eq!(
            s.update_with_confidence("good morning every", &[0.95, 0.9, 0.99]),
            Some("good morning".into())
        );
        // An unconfident word stops the confident run.
        let mut t = Stabilizer::default();
        assert_eq!(
            t.update_with_confidence("good mourning everyone", &[0.95, 0.4, 0.99]),
            Some("good".into())
        );
        // Committed words stay and never repeat, whatever later hypotheses say.
        assert_eq!(
            t.update_with_confidence("could morning everyone let's", &[0.9, 0.9, 0.9, 0.9]),
            None
        );
        assert_eq!(t.text(), "good");
        // Confidences that do not match the words are ignored.
        let mut u = Stabilizer::default();
        assert_eq!(u.update_with_confidence("good morning all", &[0.99]), None);
    }

    #[test]
    fn punctuation_and_case_do_not_break_agreement() {
        let mut s = Stabilizer::default();
        s.update("Good morning, everyone");
        assert_eq!(
            s.update("good morning everyone."),
            Some("good morning everyone.".into())
        );
    }
}
