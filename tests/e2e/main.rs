//! The integration and end-to-end tests as one test binary. Each module was a test file of its
//! own (`tests/<name>.rs`), each a binary that linked GStreamer, whisper.cpp and ONNX Runtime;
//! here they are linked once, and share one harness, `common` (a real livekit-server per test,
//! the agent's worker in-process, Python SDK participants).
//!
//! All tests of all modules run in this one process, `--test-threads` at a time (two in
//! `scripts/test.sh`): a test may share nothing by a fixed name (a port, a file, an
//! environment variable) and may measure nothing process-wide (memory, CPU time, the engine's
//! handle counters). Tests that need the process to themselves stay binaries of their own beside
//! this one (`tests/*.rs`, each saying why at its top), and include the harness by path.
//!
//! One module: `cargo test --test e2e <module>::` (e.g. `cargo test --test e2e recording_e2e::`);
//! one test: `cargo test --test e2e <module>::<test> -- --exact`.

mod common;
mod control_api;

mod api;
mod call_quality;
mod captions_model;
mod cli;
mod compliance;
mod console;
mod deepfilternet_e2e;
mod denoise_quality;
mod failover;
mod image_rootfs;
mod livekit_e2e;
mod media_messages;
mod meeting_controls;
mod noise_suppression_e2e;
mod per_participant_e2e;
mod recording_e2e;
mod recording_pipeline;
mod recording_storage;
mod segmentation;
mod store;
mod summary_llm;
mod virtual_background_e2e;
mod webhooks;
