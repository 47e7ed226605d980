//! The agent worker: registers with the LiveKit server over `/agent`, answers availability,
//! runs one job per assigned room (isolated: a failing job ends alone), reports load and job
//! status, drains on shutdown and re-registers with backoff when the server goes away.

pub mod connection;
pub mod failover;
pub mod load;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as lkp;
use lkp::server_message::Message as Server;
use lkp::worker_message::Message as Up;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::Config;
use crate::livekit::token;
use crate::store::room_leases::Release;
use connection::{AgentSocket, ConnectionError};
use failover::SharedLeases;
use load::CpuLoad;

pub type JobError = Box<dyn std::error::Error + Send + Sync>;
pub type JobFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

/// Everything a job needs to join its room.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub job: lkp::Job,
    pub url: String,
    pub token: String,
    pub identity: String,
    /// Becomes true when the server terminates the job or the worker is forced to stop.
    pub terminate: watch::Receiver<bool>,
}

impl JobContext {
    pub fn room_name(&self) -> &str {
        self.job
            .room
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or("")
    }
}

/// What runs inside a room once the worker is assigned to it.
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, ctx: JobContext) -> JobFuture;
}

/// Shutdown requests: `Drain` finishes running jobs and accepts none; `Terminate` also ends
/// running jobs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shutdown {
    Running,
    Drain,
    Terminate,
}

/// Observable worker milestones (logged, and used by tests and benchmarks).
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerEvent {
    /// The server has finished registering the worker: a room created from now on is offered.
    Registered {
        worker_id: String,
    },
    ConnectionLost {
        error: String,
        retry_in: Duration,
    },
    JobAccepted {
        job_id: String,
        room: String,
    },
    JobRefused {
        job_id: String,
        reason: &'static str,
    },
    JobFinished {
        job_id: String,
        room: String,
        status: lkp::JobStatus,
        error: String,
    },
    Drained,
    /// A load report went to the server.
    StatusReported {
        load: f32,
        full: bool,
        jobs: usize,
    },
}

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("cannot mint the worker token: {0}")]
    Token(String),
    #[error("the server did not answer the registration within {0:?}")]
    RegistrationTimeout(Duration),
}

#[derive(Clone)]
struct RunningJob {
    room: String,
    terminate: Arc<watch::Sender<bool>>,
    /// Set when this worker ends the job before its meeting is over (drain timeout, forced
    /// stop): the room still needs an agent.
    cut_short: Arc<std::sync::atomic::AtomicBool>,
}

impl RunningJob {
    fn cut_short(&self) {
        self.cut_short
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.terminate.send(true);
    }
}

struct JobDone {
    job_id: String,
    status: lkp::JobStatus,
    error: String,
}

/// Exponential backoff with a cap and ±20% jitter.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            next: initial,
            initial,
            max,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = 0.8 + 0.4 * (nanos % 1000) as f64 / 1000.0;
        base.mul_f64(jitter)
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

pub struct Worker {
    config: Config,
    handler: Arc<dyn JobHandler>,
    events: broadcast::Sender<WorkerEvent>,
    jobs: HashMap<String, RunningJob>,
    done_tx: mpsc::UnboundedSender<JobDone>,
    done_rx: mpsc::UnboundedReceiver<JobDone>,
    /// Job status updates not yet delivered (the socket was down when the job ended).
    unsent: Vec<lkp::UpdateJobStatus>,
    draining: bool,
    cpu: CpuLoad,
    /// The load of the last report: availability answers use it rather than re-sampling.
    last_load: f32,
    status_seq: u64,
    /// Room leases shared with the other workers on the same store (failover).
    leases: Option<SharedLeases>,
    draining_tx: watch::Sender<bool>,
}

/// Why a connection ended.
enum SessionEnd {
    Drained,
    Lost(ConnectionError),
}

impl Worker {
    pub fn new(config: Config, handler: Arc<dyn JobHandler>) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(256);
        Self {
            config,
            handler,
            events,
            jobs: HashMap::new(),
            done_tx,
            done_rx,
            unsent: Vec::new(),
            draining: false,
            cpu: CpuLoad::default(),
            last_load: 0.0,
            status_seq: 0,
            leases: None,
            draining_tx: watch::channel(false).0,
        }
    }

    /// Claims each room in the store's room leases and takes over rooms whose worker died
    /// (src/worker/failover.rs).
    pub fn with_room_leases(mut self, leases: SharedLeases) -> Self {
        self.leases = Some(leases);
        self
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: WorkerEvent) {
        match &event {
            WorkerEvent::Registered { worker_id } => {
                tracing::info!(worker_id, agent_name = %self.config.agent.name, "worker registered")
            }
            WorkerEvent::ConnectionLost { error, retry_in } => {
                tracing::warn!(%error, retry_in_ms = retry_in.as_millis() as u64, "LiveKit server unreachable; retrying")
            }
            WorkerEvent::JobAccepted { job_id, room } => {
                tracing::info!(job_id, room, "job accepted")
            }
            WorkerEvent::JobRefused { job_id, reason } => {
                tracing::info!(job_id, reason, "job refused")
            }
            WorkerEvent::JobFinished {
                job_id,
                room,
                status,
                error,
            } => {
                tracing::info!(
                    job_id,
                    room,
                    status = status.as_str_name(),
                    error,
                    "job finished"
                )
            }
            WorkerEvent::Drained => tracing::info!("worker drained"),
            WorkerEvent::StatusReported { load, full, jobs } => {
                tracing::debug!(load, full, jobs, "load reported")
            }
        }
        let _ = self.events.send(event);
    }

    /// Runs until drained after a shutdown request, or until a fatal error (bad credentials).
    pub async fn run(self, shutdown: watch::Receiver<Shutdown>) -> Result<(), WorkerError> {
        let Some(leases) = self.leases.clone() else {
            return self.run_connected(shutdown).await;
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let draining = self.draining_tx.subscribe();
        // Alive in the others' eyes before the first job can come.
        let liveness = leases.hold_liveness().await;
        let keeper = tokio::spawn(async move { leases.keep(liveness, draining, stop_rx).await });
        let result = self.run_connected(shutdown).await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), keeper).await;
        result
    }

    async fn run_connected(
        mut self,
        mut shutdown: watch::Receiver<Shutdown>,
    ) -> Result<(), WorkerError> {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            if self.draining && self.jobs.is_empty() {
                self.emit(WorkerEvent::Drained);
                return Ok(());
            }
            let token = token::worker_token(
                &self.config.livekit.api_key,
                &self.config.livekit.api_secret,
            )
            .map_err(|e| WorkerError::Token(e.to_string()))?;
            let ws_url = self.config.ws_url();
            let connected = tokio::select! {
                r = AgentSocket::connect(&ws_url, &token) => Some(r),
                _ = shutdown.changed() => None,
            };
            let error = match connected {
                None => {
                    self.on_shutdown(*shutdown.borrow_and_update());
                    continue;
                }
                Some(Ok(socket)) => match self.serve(socket, &mut shutdown, &mut backoff).await {
                    Ok(SessionEnd::Drained) => {
                        self.emit(WorkerEvent::Drained);
                        return Ok(());
                    }
                    Ok(SessionEnd::Lost(e)) | Err(e) => e,
                },
                Some(Err(e)) => e,
            };
            if error.is_fatal() {
                return Err(error.into());
            }
            let retry_in = backoff.next_delay();
            self.emit(WorkerEvent::ConnectionLost {
                error: error.to_string(),
                retry_in,
            });
            let until = tokio::time::Instant::now() + retry_in;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = shutdown.changed() => self.on_shutdown(*shutdown.borrow_and_update()),
                    Some(done) = self.done_rx.recv() => self.on_job_done(done),
                }
                if self.draining && self.jobs.is_empty() {
                    break;
                }
            }
        }
    }

    fn on_shutdown(&mut self, level: Shutdown) {
        if level >= Shutdown::Drain && !self.draining {
            tracing::info!(
                running_jobs = self.jobs.len(),
                "draining: finishing running jobs, accepting none"
            );
            self.draining = true;
            let _ = self.draining_tx.send(true);
            // Jobs still running after the drain timeout are terminated (no new ones can start);
            // their rooms are left to another worker.
            let timeout = Duration::from_secs(self.config.agent.drain_timeout_secs);
            let running: Vec<RunningJob> = self.jobs.values().cloned().collect();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                for job in running.iter().filter(|j| !j.terminate.is_closed()) {
                    tracing::warn!(?timeout, room = %job.room, "drain timeout: terminating a job");
                    job.cut_short();
                }
            });
        }
        if level == Shutdown::Terminate {
            tracing::warn!(running_jobs = self.jobs.len(), "terminating running jobs");
            for job in self.jobs.values() {
                job.cut_short();
            }
        }
    }

    fn on_job_done(&mut self, done: JobDone) {
        let room = self
            .jobs
            .remove(&done.job_id)
            .map(|j| j.room)
            .unwrap_or_default();
        self.unsent.push(lkp::UpdateJobStatus {
            job_id: done.job_id.clone(),
            status: done.status as i32,
            error: done.error.clone(),
        });
        self.emit(WorkerEvent::JobFinished {
            job_id: done.job_id,
            room,
            status: done.status,
            error: done.error,
        });
    }

    async fn serve(
        &mut self,
        mut socket: AgentSocket,
        shutdown: &mut watch::Receiver<Shutdown>,
        backoff: &mut Backoff,
    ) -> Result<SessionEnd, ConnectionError> {
        socket.send(Up::Register(self.register_request())).await?;
        let timeout = Duration::from_secs(10);
        let worker_id = match tokio::time::timeout(timeout, socket.recv()).await {
            Ok(Ok(Server::Register(r))) => r.worker_id,
            Ok(Ok(other)) => {
                return Err(ConnectionError::Closed(format!(
                    "expected a registration answer, got {other:?}"
                )));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ConnectionError::Closed(format!(
                    "no registration answer within {timeout:?}"
                )));
            }
        };
        backoff.reset();
        // livekit-server answers the registration before it adds the worker to those it
        // dispatches to (a room created in between got no agent). It reads a worker's messages
        // in order, so the answer to a ping sent now means the registration is complete.
        let mut announce = Some(worker_id);
        socket
            .send(Up::Ping(lkp::WorkerPing { timestamp: 0 }))
            .await?;
        for update in std::mem::take(&mut self.unsent) {
            socket.send(Up::UpdateJob(update)).await?;
        }
        self.send_status(&mut socket).await?;

        // Both start one period from now: registration has just reported the status.
        let status_every = Duration::from_secs_f32(self.config.agent.status_interval_secs);
        let mut status_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + status_every, status_every);
        let ping_every = Duration::from_secs(10);
        let mut ping_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut last_heard = Instant::now();
        loop {
            if self.draining && self.jobs.is_empty() {
                self.send_status(&mut socket).await?;
                socket.close().await;
                return Ok(SessionEnd::Drained);
            }
            tokio::select! {
                message = socket.recv() => {
                    last_heard = Instant::now();
                    let message = message?;
                    if matches!(message, Server::Pong(_))
                        && let Some(worker_id) = announce.take()
                    {
                        self.emit(WorkerEvent::Registered { worker_id });
                    }
                    self.on_server_message(&mut socket, message).await?;
                }
                Some(done) = self.done_rx.recv() => {
                    self.on_job_done(done);
                    for update in std::mem::take(&mut self.unsent) {
                        socket.send(Up::UpdateJob(update)).await?;
                    }
                    self.send_status(&mut socket).await?;
                }
                _ = status_tick.tick() => self.send_status(&mut socket).await?,
                _ = ping_tick.tick() => {
                    if last_heard.elapsed() > Duration::from_secs(35) {
                        return Ok(SessionEnd::Lost(ConnectionError::Closed("server stopped answering pings".into())));
                    }
                    let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
                    socket.send(Up::Ping(lkp::WorkerPing { timestamp })).await?;
                }
                _ = shutdown.changed() => {
                    self.on_shutdown(*shutdown.borrow_and_update());
                    self.send_status(&mut socket).await?;
                }
            }
        }
    }

    fn register_request(&self) -> lkp::RegisterWorkerRequest {
        lkp::RegisterWorkerRequest {
            r#type: lkp::JobType::JtRoom as i32,
            agent_name: self.config.agent.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            allowed_permissions: Some(lkp::ParticipantPermission {
                can_subscribe: true,
                can_publish: true,
                can_publish_data: true,
                can_update_metadata: true,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn at_capacity(&self, load: f32) -> Option<&'static str> {
        if self.draining {
            Some("draining")
        } else if load > self.config.agent.load_threshold {
            Some("cpu load above threshold")
        } else if self.config.agent.max_jobs > 0
            && self.jobs.len() >= self.config.agent.max_jobs as usize
        {
            Some("job limit reached")
        } else {
            None
        }
    }

    async fn send_status(&mut self, socket: &mut AgentSocket) -> Result<(), ConnectionError> {
        let load = self.cpu.sample();
        self.last_load = load;
        let full = self.at_capacity(load).is_some();
        let status = if full {
            lkp::WorkerStatus::WsFull
        } else {
            lkp::WorkerStatus::WsAvailable
        };
        self.emit(WorkerEvent::StatusReported {
            load,
            full,
            jobs: self.jobs.len(),
        });
        metrics::LOAD.set(load as f64);
        metrics::JOBS.set(self.jobs.len() as i64);
        metrics::FULL.set(full as i64);
        metrics::DRAINING.set(self.draining as i64);
        self.status_seq += 1;
        // livekit-server weighs available workers by 1 - load and dispatches nothing when that
        // sums to 0: a saturated machine reporting 1.0 would get no job although its status
        // says available. The status decides availability; the load only weighs the choice.
        let weight_load = if full { load } else { load.min(0.99) };
        socket
            .send(Up::UpdateWorker(lkp::UpdateWorkerStatus {
                status: Some(status as i32),
                load: weight_load,
                job_count: self.jobs.len() as u32,
                draining: self.draining,
                seq: self.status_seq,
            }))
            .await
    }

    async fn on_server_message(
        &mut self,
        socket: &mut AgentSocket,
        message: Server,
    ) -> Result<(), ConnectionError> {
        match message {
            Server::Availability(request) => {
                let job = request.job.unwrap_or_default();
                let refusal = self.at_capacity(self.last_load);
                if let Some(reason) = refusal {
                    self.emit(WorkerEvent::JobRefused {
                        job_id: job.id.clone(),
                        reason,
                    });
                }
                socket
                    .send(Up::Availability(lkp::AvailabilityResponse {
                        job_id: job.id.clone(),
                        available: refusal.is_none(),
                        participant_identity: format!("agent-{}", job.id),
                        participant_name: self.config.agent.participant_name.clone(),
                        ..Default::default()
                    }))
                    .await?;
            }
            Server::Assignment(assignment) => {
                let job = assignment.job.unwrap_or_default();
                let url = assignment
                    .url
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| self.config.ws_url());
                self.start_job(job.clone(), url, assignment.token);
                socket
                    .send(Up::UpdateJob(lkp::UpdateJobStatus {
                        job_id: job.id,
                        status: lkp::JobStatus::JsRunning as i32,
                        error: String::new(),
                    }))
                    .await?;
            }
            Server::Termination(t) => {
                tracing::info!(job_id = %t.job_id, "server terminated job");
                if let Some(job) = self.jobs.get(&t.job_id) {
                    let _ = job.terminate.send(true);
                }
            }
            Server::Pong(_) | Server::Register(_) => {}
            Server::GoAway(_) => {
                return Err(ConnectionError::Closed(
                    "server asked the worker to go away".into(),
                ));
            }
        }
        Ok(())
    }

    fn start_job(&mut self, job: lkp::Job, url: String, token: String) {
        let job_id = job.id.clone();
        let room = job
            .room
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let room_sid = job.room.as_ref().map(|r| r.sid.clone()).unwrap_or_default();
        let (terminate, terminate_rx) = watch::channel(false);
        let terminate = Arc::new(terminate);
        let job_terminate = terminate.clone();
        let ctx = JobContext {
            identity: format!("agent-{job_id}"),
            job,
            url,
            token,
            terminate: terminate_rx,
        };
        let cut_short = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler = self.handler.clone();
        let leases = self.leases.clone();
        let done_tx = self.done_tx.clone();
        let id = job_id.clone();
        let room_name = room.clone();
        let job_cut_short = cut_short.clone();
        tokio::spawn(async move {
            // One live agent per room instance: another worker's agent may already serve it
            // (a re-dispatch racing a worker that came back).
            if let Some(leases) = &leases
                && !leases.claim(&room_sid, &room_name).await
            {
                tracing::info!(room = %room_name, "another live agent serves this room; leaving the job");
                let _ = done_tx.send(JobDone {
                    job_id: id,
                    status: lkp::JobStatus::JsSuccess,
                    error: "another agent serves this room".into(),
                });
                return;
            }
            // The job runs in its own task: a panic or error there ends that job only.
            let mut task = tokio::spawn(handler.run(ctx));
            // A room another worker has claimed since (this one looked dead) is left to it.
            let mut replaced = false;
            let mut hold_check = tokio::time::interval(failover::HOLD_CHECK);
            hold_check.tick().await;
            let joined = loop {
                tokio::select! {
                    joined = &mut task => break joined,
                    _ = hold_check.tick(), if leases.is_some() && !replaced => {
                        if let Some(leases) = &leases
                            && !leases.still_holds(&room_sid).await
                        {
                            tracing::warn!(room = %room_name, "another worker took this room over; leaving it");
                            replaced = true;
                            let _ = job_terminate.send(true);
                        }
                    }
                }
            };
            let (status, error) = match joined {
                Ok(Ok(())) => (lkp::JobStatus::JsSuccess, String::new()),
                Ok(Err(e)) => (lkp::JobStatus::JsFailed, e.to_string()),
                Err(e) if e.is_panic() => (
                    lkp::JobStatus::JsFailed,
                    format!("job panicked: {}", panic_message(e.into_panic())),
                ),
                Err(e) => (lkp::JobStatus::JsFailed, e.to_string()),
            };
            if let Some(leases) = leases.as_ref().filter(|_| !replaced) {
                let over = status == lkp::JobStatus::JsSuccess
                    && !job_cut_short.load(std::sync::atomic::Ordering::Relaxed);
                let how = if over {
                    Release::Ended
                } else {
                    Release::Orphaned
                };
                leases.release(&room_sid, how).await;
            }
            let _ = done_tx.send(JobDone {
                job_id: id,
                status,
                error,
            });
        });
        self.jobs.insert(
            job_id.clone(),
            RunningJob {
                room: room.clone(),
                terminate,
                cut_short,
            },
        );
        self.emit(WorkerEvent::JobAccepted { job_id, room });
    }
}

/// The worker's state as last reported to the server (the autoscaler's signal).
mod metrics {
    use std::sync::LazyLock;

    use prometheus::{Gauge, IntGauge};

    pub static LOAD: LazyLock<Gauge> = LazyLock::new(|| {
        crate::metrics::float_gauge(
            "meeting_agent_worker_load",
            "The load (0..1) the worker last reported to the server.",
        )
    });
    pub static JOBS: LazyLock<IntGauge> = LazyLock::new(|| {
        crate::metrics::gauge(
            "meeting_agent_worker_jobs",
            "Rooms (jobs) the worker is serving.",
        )
    });
    pub static FULL: LazyLock<IntGauge> = LazyLock::new(|| {
        crate::metrics::gauge(
            "meeting_agent_worker_full",
            "1 while the worker reports itself full (load, job limit or draining).",
        )
    });
    pub static DRAINING: LazyLock<IntGauge> = LazyLock::new(|| {
        crate::metrics::gauge(
            "meeting_agent_worker_draining",
            "1 once the worker drains (finishes its rooms, accepts none).",
        )
    });
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert!((400..=600).contains(&delays[0]), "{delays:?}");
        assert!((800..=1200).contains(&delays[1]), "{delays:?}");
        assert!(delays[5] <= 4800 && delays[5] >= 3200, "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }

    #[test]
    fn panic_messages_are_kept() {
        assert_eq!(panic_message(Box::new("boom")), "boom");
        assert_eq!(panic_message(Box::new(String::from("bang"))), "bang");
    }
}
