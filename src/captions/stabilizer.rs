//! LocalAgreement-2: of each new interim hypothesis, only the word prefix it shares with the
//! previous one is committed, and committed words never change or repeat, so interim captions
//! grow monotonically instead of flickering.

#[derive(Debug, Default)]
pub struct Stabilizer {
    previous: Vec<String>,
    committed: Vec<String>,
}

impl Stabilizer {
    /// Feeds a hypothesis for the whole utterance so far; returns the committed text when it grew.
    pub fn update(&mut self, hypothesis: &str) -> Option<String> {
        let words: Vec<String> = hypothesis.split_whitespace().map(str::to_string).collect();
        let agreed = self
            .previous
            .iter()
            .zip(&words)
            .take_while(|(a, b)| same_word(a, b))
            .count();
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
    fn punctuation_and_case_do_not_break_agreement() {
        let mut s = Stabilizer::default();
        s.update("Good morning, everyone");
        assert_eq!(
            s.update("good morning everyone."),
            Some("good morning everyone.".into())
        );
    }
}
