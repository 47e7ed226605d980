//! Person segmentation against MediaPipe's own output on a real photograph (scikit-image's
//! astronaut; MediaPipe's masks made by models/mediapipe_reference_masks.py), a photograph with no
//! person, and bad input.

use meeting_agent::media::VideoFrame;
use meeting_agent::video::mask::MaskRefiner;
use meeting_agent::video::{SegmentationModel, Segmenter, VbError};

fn environment() -> ort::environment::Environment {
    meeting_agent::onnx::environment(&meeting_agent::config::onnxruntime_library())
        .expect("scripts/setup.sh installs ONNX Runtime")
}

fn photo(name: &str) -> VideoFrame {
    let path = meeting_agent_devtools::fixtures::dir().unwrap().join(name);
    let rgb = image::open(&path).unwrap().to_rgb8();
    VideoFrame::from_rgb(rgb.width(), rgb.height(), rgb.as_raw()).unwrap()
}

fn segmenter(model: SegmentationModel) -> Segmenter {
    Segmenter::new(&environment(), &model.default_path(), model)
        .expect("models/fetch_models.sh selfie-segmentation")
}

/// Alpha (0..=255) of `frame` as our pipeline makes it.
fn alpha(model: SegmentationModel, frame: &VideoFrame) -> MaskRefiner {
    let mut s = segmenter(model);
    let mask = s.segment(frame).unwrap().to_vec();
    let (mw, mh) = model.size();
    let mut r = MaskRefiner::default();
    r.refine(&mask, mw, mh, frame.width as usize, frame.height as usize);
    r
}

#[test]
fn the_mask_agrees_with_mediapipe_on_a_photograph() {
    let frame = photo("astronaut.png");
    for (model, reference) in [
        (
            SegmentationModel::General,
            "astronaut-mediapipe-mask-general.png",
        ),
        (
            SegmentationModel::Landscape,
            "astronaut-mediapipe-mask-landscape.png",
        ),
    ] {
        let ours = alpha(model, &frame);
        let path = meeting_agent_devtools::fixtures::dir()
            .unwrap()
            .join(reference);
        let theirs = image::open(path).unwrap().to_luma8();
        assert_eq!(
            (theirs.width(), theirs.height()),
            (frame.width, frame.height)
        );
        let (mut both, mut either) = (0usize, 0usize);
        for (&a, &b) in ours.luma.iter().zip(theirs.as_raw()) {
            let (a, b) = (a >= 128, b >= 128);
            both += (a && b) as usize;
            either += (a || b) as usize;
        }
        let iou = both as f64 / either as f64;
        println!("{model:?}: IoU with MediaPipe {iou:.3}");
        assert!(iou >= 0.9, "{model:?}: IoU {iou:.3}");
    }
}

/// A scene with no one in it (a rocket on its launch pad). The selfie models are trained on
/// people in front of cameras and do take large close-up objects for a person (README).
#[test]
fn a_photograph_without_a_person_is_background() {
    let frame = photo("rocket.jpg");
    for model in [SegmentationModel::General, SegmentationModel::Landscape] {
        let share = alpha(model, &frame).background_share();
        println!("{model:?}: {share:.3} background");
        assert!(share >= 0.9, "{model:?}: {share:.3}");
    }
}

#[test]
fn bad_frames_and_models_give_clear_errors() {
    let mut s = segmenter(SegmentationModel::Landscape);
    let mut frame = photo("rocket.jpg");
    frame.data.truncate(100);
    let e = s.segment(&frame).unwrap_err();
    assert!(matches!(e, VbError::Frame(_)), "{e}");
    // The segmenter still works after refusing a frame.
    assert!(s.segment(&photo("rocket.jpg")).is_ok());

    let missing = std::env::temp_dir().join("no-such-model.onnx");
    let e = Segmenter::new(&environment(), &missing, SegmentationModel::General)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no such file") && e.contains("fetch_models.sh"),
        "{e}"
    );
    let corrupt = std::env::temp_dir().join(format!("corrupt-{}.onnx", std::process::id()));
    std::fs::write(&corrupt, b"not a model at all").unwrap();
    let e = Segmenter::new(&environment(), &corrupt, SegmentationModel::General)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cannot load the segmentation model"), "{e}");
    // The landscape file is not the general model.
    let e = Segmenter::new(
        &environment(),
        &SegmentationModel::Landscape.default_path(),
        SegmentationModel::General,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("input shape"), "{e}");
    std::fs::remove_file(corrupt).ok();
}

/// Image mode puts the picture where there is no person; a frame size change mid-stream just
/// works; image URLs that lead inside the machine are refused before any connection.
#[tokio::test]
async fn image_backgrounds_size_changes_and_slow_urls() {
    use meeting_agent::video::background;
    use meeting_agent::video::processor::{Processor, SegmenterPool, VbMode};
    let config = meeting_agent::config::Config::default();
    let pool = SegmenterPool::new(environment(), config.video.models_dir).unwrap();
    let mut processor = Processor::new(pool);
    let fixtures = meeting_agent_devtools::fixtures::dir().unwrap();
    let scenery = std::sync::Arc::new(
        background::decode_bounded(std::fs::read(fixtures.join("rocket.jpg")).unwrap())
            .await
            .unwrap(),
    );
    for (w, h) in [(640u32, 360u32), (320, 240), (640, 360)] {
        let rgb = image::imageops::resize(
            &image::open(fixtures.join("astronaut.png"))
                .unwrap()
                .to_rgb8(),
            w,
            h,
            image::imageops::FilterType::Triangle,
        );
        let mut frame = VideoFrame::from_rgb(w, h, rgb.as_raw()).unwrap();
        let original = frame.clone();
        processor
            .process(&mut frame, &VbMode::Image(scenery.clone()))
            .unwrap();
        assert_eq!((frame.width, frame.height), (w, h));
        let bg = background::fit(&scenery, w, h);
        // The top-left corner of the astronaut photo is background: it now shows the picture.
        let (y, _, _) = frame.planes();
        let (by, _, _) = bg.planes();
        let (oy, _, _) = original.planes();
        let corner = |p: &[u8]| {
            (0..8)
                .flat_map(|r| (0..8).map(move |c| (r, c)))
                .map(|(r, c)| p[r * w as usize + c] as i32)
                .collect::<Vec<_>>()
        };
        assert_eq!(corner(y), corner(by), "{w}x{h}: background replaced");
        assert_ne!(corner(y), corner(oy));
    }

    // A server on loopback, allow-listed by name: the name resolves inside, so the fetch is
    // refused before connecting (the server never sees a connection).
    use meeting_agent::video::background_source::{BackgroundSource, SourcePolicy};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let policy = SourcePolicy::new(
        std::env::temp_dir().join("ma-seg-uploads"),
        vec![format!("localhost:{port}")],
    );
    let source = policy
        .check("room", &format!("https://localhost:{port}/bg.png"))
        .unwrap();
    assert!(matches!(source, BackgroundSource::Url { .. }));
    let e = background::load(&source).await.unwrap_err();
    assert!(
        matches!(e, background::BackgroundError::Source(_)),
        "refused as an inside address: {e}"
    );
    assert!(
        policy
            .check("room", &format!("http://localhost:{port}/bg.png"))
            .is_err(),
        "plain http"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !accepted.load(std::sync::atomic::Ordering::SeqCst),
        "no connection was made"
    );
}

/// A person-free checkerboard blurred edge to edge: the rows at the frame's edges lose their
/// detail like the rest (they used to keep much of it: issue 13).
#[test]
fn a_blurred_background_reaches_the_frame_edges() {
    let (w, h) = (640u32, 360u32);
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            let v = if (x / 16 + y / 16) % 2 == 0 { 230 } else { 25 };
            [v, v, v]
        })
        .collect();
    let original = VideoFrame::from_rgb(w, h, &rgb).unwrap();
    let model = SegmentationModel::for_frame(w, h);
    let refined = alpha(model, &original);
    let row_alpha = |y: u32| {
        refined.luma[(y * w) as usize..((y + 1) * w) as usize]
            .iter()
            .map(|&a| a as f64)
            .sum::<f64>()
            / w as f64
    };
    for y in [0, 1, 2, 3, 180, 356, 357, 358, 359] {
        println!("row {y}: mean alpha {:.1}", row_alpha(y));
    }
    let mut blurred = original.clone();
    meeting_agent::video::composite::Compositor::default().blur(
        &mut blurred,
        &refined.luma,
        &refined.chroma,
        8,
    );
    // Mean absolute difference between neighbours along a row of luma.
    let gradient = |frame: &VideoFrame, y: u32| {
        let row = &frame.data[(y * w) as usize..((y + 1) * w) as usize];
        row.windows(2)
            .map(|p| (p[0] as f64 - p[1] as f64).abs())
            .sum::<f64>()
            / (w - 1) as f64
    };
    for y in [0, 1, 2, 3, 180, 356, 357, 358, 359] {
        println!(
            "row {y}: gradient {:.2} (original {:.2})",
            gradient(&blurred, y),
            gradient(&original, y)
        );
    }
}
