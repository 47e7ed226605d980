//! Where each video goes on the recording's canvas, and which participant counts as the
//! active speaker. Pure logic: the pipeline applies the rectangles to compositor pads.

pub use crate::config::Layout;

/// A rectangle on the canvas in pixels; positions and sizes are even (4:2:0 chroma).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

impl Rect {
    fn even(x: i32, y: i32, width: i32, height: i32) -> Self {
        Self {
            x: x & !1,
            y: y & !1,
            width: (width & !1).max(2),
            height: (height & !1).max(2),
        }
    }
}

/// One video on the canvas: its input id and the cell it is fitted into (the compositor
/// keeps the aspect ratio inside the cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub input: String,
    pub rect: Rect,
}

/// The videos to arrange: cameras in order of arrival, screen shares, the speaker's camera.
#[derive(Debug, Default, Clone)]
pub struct Scene {
    pub cameras: Vec<String>,
    pub screens: Vec<String>,
    /// The input id of the active speaker's camera, when known.
    pub speaker: Option<String>,
    /// The input id of the spotlit participant's camera: shown large in every layout (a
    /// screen share still comes first).
    pub spotlight: Option<String>,
}

/// Share of the canvas height the strip of small tiles takes in speaker and screen-share.
const STRIP_SHARE: f32 = 0.2;
/// The strip shows at most this many tiles side by side.
const STRIP_MAX: usize = 6;

pub fn arrange<'a>(layout: Layout, width: u32, height: u32, scene: &'a Scene) -> Vec<Placement> {
    let (w, h) = (width as i32, height as i32);
    if let Some(screen) = scene.screens.last() {
        return main_and_strip(w, h, screen, &scene.cameras);
    }
    let on_camera =
        |input: &'a Option<String>| input.as_ref().filter(|s| scene.cameras.contains(s));
    // The spotlight wins over the layout; the speaker layouts fall back to the first camera.
    let main = match (on_camera(&scene.spotlight), layout) {
        (Some(spotlit), _) => spotlit,
        (None, Layout::Grid) => return grid(w, h, &scene.cameras),
        (None, Layout::Speaker | Layout::ScreenShare) => {
            match on_camera(&scene.speaker).or(scene.cameras.first()) {
                Some(main) => main,
                None => return Vec::new(),
            }
        }
    };
    let others: Vec<String> = scene
        .cameras
        .iter()
        .filter(|c| *c != main)
        .cloned()
        .collect();
    main_and_strip(w, h, main, &others)
}

fn grid(w: i32, h: i32, inputs: &[String]) -> Vec<Placement> {
    let n = inputs.len() as i32;
    if n == 0 {
        return Vec::new();
    }
    let cols = (n as f32).sqrt().ceil() as i32;
    let rows = (n + cols - 1) / cols;
    let (cw, ch) = (w / cols, h / rows);
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let (row, col) = (i as i32 / cols, i as i32 % cols);
            // A short last row is centred.
            let in_row = if row == rows - 1 {
                n - row * cols
            } else {
                cols
            };
            let offset = (w - in_row * cw) / 2;
            Placement {
                input: input.clone(),
                rect: Rect::even(offset + col * cw, row * ch, cw, ch),
            }
        })
        .collect()
}

fn main_and_strip(w: i32, h: i32, main: &str, strip: &[String]) -> Vec<Placement> {
    if strip.is_empty() {
        return vec![Placement {
            input: main.to_string(),
            rect: Rect::even(0, 0, w, h),
        }];
    }
    let strip_h = (h as f32 * STRIP_SHARE) as i32;
    let mut out = vec![Placement {
        input: main.to_string(),
        rect: Rect::even(0, 0, w, h - strip_h),
    }];
    let shown = strip.len().min(STRIP_MAX) as i32;
    // Tiles 16:9 at the strip's height, or narrower when many.
    let tile_w = (strip_h * 16 / 9).min(w / shown);
    let offset = (w - shown * tile_w) / 2;
    for (i, input) in strip.iter().take(STRIP_MAX).enumerate() {
        out.push(Placement {
            input: input.clone(),
            rect: Rect::even(offset + i as i32 * tile_w, h - strip_h, tile_w, strip_h),
        });
    }
    out
}

/// Picks the participant shown large in the speaker layout from LiveKit's active-speaker
/// events, with hysteresis: a new speaker must stay the loudest for `confirm_ms`, and the
/// current one is kept at least `hold_ms`, so the layout does not flap on short interjections.
#[derive(Debug, Clone)]
pub struct SpeakerSelector {
    pub confirm_ms: u64,
    pub hold_ms: u64,
    current: Option<String>,
    current_since: u64,
    candidate: Option<(String, u64)>,
}

impl Default for SpeakerSelector {
    fn default() -> Self {
        Self {
            confirm_ms: 800,
            hold_ms: 2_000,
            current: None,
            current_since: 0,
            candidate: None,
        }
    }
}

impl SpeakerSelector {
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// LiveKit's list of active speakers, loudest first, at `now_ms`. Returns true when the
    /// selected speaker changed.
    pub fn observe(&mut self, now_ms: u64, speakers: &[String]) -> bool {
        match speakers.first() {
            None => self.candidate = None,
            Some(top) if Some(top) == self.current.as_ref() => self.candidate = None,
            Some(top) => {
                if self.candidate.as_ref().map(|(c, _)| c) != Some(top) {
                    self.candidate = Some((top.clone(), now_ms));
                }
            }
        }
        self.tick(now_ms)
    }

    /// Promotes a candidate that has waited long enough; call periodically.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let Some((candidate, since)) = &self.candidate else {
            return false;
        };
        let first = self.current.is_none();
        let confirmed = now_ms.saturating_sub(*since) >= self.confirm_ms;
        let held = now_ms.saturating_sub(self.current_since) >= self.hold_ms;
        if first || (confirmed && held) {
            self.current = Some(candidate.clone());
            self.current_since = now_ms;
            self.candidate = None;
            return true;
        }
        false
    }

    /// A participant left: the speaker slot is freed at once.
    pub fn forget(&mut self, identity: &str) -> bool {
        if self.candidate.as_ref().is_some_and(|(c, _)| c == identity) {
            self.candidate = None;
        }
        if self.current.as_deref() == Some(identity) {
            self.current = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("v{i}")).collect()
    }

    fn scene(cameras: usize) -> Scene {
        Scene {
            cameras: ids(cameras),
            ..Default::default()
        }
    }

    fn overlaps(a: &Rect, b: &Rect) -> bool {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    }

    #[test]
    fn the_spotlit_camera_is_large_in_every_layout_but_under_a_screen_share() {
        for layout in [Layout::Grid, Layout::Speaker, Layout::ScreenShare] {
            let spotlit = Scene {
                spotlight: Some("v2".into()),
                speaker: Some("v0".into()),
                ..scene(3)
            };
            let p = arrange(layout, 1280, 720, &spotlit);
            assert_eq!(p[0].input, "v2", "{layout:?}");
            assert_eq!(
                (p[0].rect.width, p[0].rect.height),
                (1280, 576),
                "{layout:?}"
            );
            assert_eq!(p.len(), 3, "the others in the strip");
            // Someone not on camera in the spotlight changes nothing.
            let absent = Scene {
                spotlight: Some("gone".into()),
                ..scene(3)
            };
            assert_eq!(
                arrange(layout, 1280, 720, &absent),
                arrange(layout, 1280, 720, &scene(3))
            );
            let shared = Scene {
                screens: vec!["s".into()],
                ..spotlit
            };
            assert_eq!(arrange(layout, 1280, 720, &shared)[0].input, "s");
        }
    }

    #[test]
    fn grid_of_four_is_two_by_two_quadrants() {
        let p = arrange(Layout::Grid, 1280, 720, &scene(4));
        let rects: Vec<_> = p.iter().map(|p| p.rect).collect();
        assert_eq!(
            rects,
            vec![
                Rect::even(0, 0, 640, 360),
                Rect::even(640, 0, 640, 360),
                Rect::even(0, 360, 640, 360),
                Rect::even(640, 360, 640, 360)
            ]
        );
    }

    #[test]
    fn grids_stay_inside_the_canvas_without_overlap() {
        for n in 1..=12 {
            let p = arrange(Layout::Grid, 1280, 720, &scene(n));
            assert_eq!(p.len(), n);
            for (i, a) in p.iter().enumerate() {
                let r = a.rect;
                assert!(r.x >= 0 && r.y >= 0 && r.x + r.width <= 1280 && r.y + r.height <= 720);
                assert!(r.x % 2 == 0 && r.y % 2 == 0 && r.width % 2 == 0);
                for b in &p[i + 1..] {
                    assert!(!overlaps(&r, &b.rect), "{n} tiles: {r:?} / {:?}", b.rect);
                }
            }
        }
        // Three: two on top, one centred below.
        let p = arrange(Layout::Grid, 1280, 720, &scene(3));
        assert_eq!(p[2].rect.x, 320);
    }

    #[test]
    fn speaker_layout_puts_the_speaker_large() {
        let mut s = scene(3);
        s.speaker = Some("v2".into());
        let p = arrange(Layout::Speaker, 1280, 720, &s);
        assert_eq!(p[0].input, "v2");
        assert_eq!(p[0].rect.width, 1280);
        assert!(
            p[1..]
                .iter()
                .all(|t| t.rect.height < 200 && t.rect.y >= 576)
        );
        // An unknown speaker falls back to the first camera.
        s.speaker = Some("gone".into());
        assert_eq!(arrange(Layout::Speaker, 1280, 720, &s)[0].input, "v0");
    }

    #[test]
    fn a_screen_share_takes_over_any_layout() {
        let mut s = scene(2);
        s.screens = vec!["screen".into()];
        for layout in [Layout::Grid, Layout::Speaker, Layout::ScreenShare] {
            let p = arrange(layout, 1280, 720, &s);
            assert_eq!(p[0].input, "screen");
            assert_eq!(p.len(), 3);
            assert!(p[0].rect.height >= 570);
        }
        assert!(arrange(Layout::ScreenShare, 1280, 720, &Scene::default()).is_empty());
    }

    #[test]
    fn speaker_selection_has_hysteresis() {
        let mut sel = SpeakerSelector::default();
        let who = |s: &str| vec![s.to_string()];
        assert!(
            sel.observe(0, &who("a")),
            "the first speaker is taken at once"
        );
        // A short interjection by b does not switch.
        assert!(!sel.observe(2_500, &who("b")));
        assert!(!sel.observe(2_900, &who("a")));
        assert!(!sel.tick(4_000));
        assert_eq!(sel.current(), Some("a"));
        // b speaks long enough: switched after confirm_ms.
        assert!(!sel.observe(5_000, &who("b")));
        assert!(!sel.tick(5_500));
        assert!(sel.tick(5_800));
        assert_eq!(sel.current(), Some("b"));
        // a back at once: held for hold_ms even when confirmed.
        sel.observe(6_000, &who("a"));
        assert!(!sel.tick(7_000));
        assert!(sel.tick(7_800));
        assert_eq!(sel.current(), Some("a"));
        assert!(sel.forget("a"));
        assert_eq!(sel.current(), None);
    }
}
