//! The supervision tree: a root actor over the camera supervisor, which runs one
//! [`CameraActor`] per enabled camera. Which cameras run is derived from the event store: the
//! supervisor folds every camera event from the start of `$all`, then follows it live, so a
//! restarted process runs the same set. A camera actor that fails is reported (`offline` when
//! it had been receiving frames, else `error`) and restarted after a capped exponential
//! backoff; the others keep running. A camera whose video file was read to its end is
//! reported `ended` and left stopped until its settings change (also across a restart).
//! Before a camera's actor starts, the tracks the log says are open on it — left by a process
//! that was killed, or by an actor that failed — are ended (`interrupted`): the sweep; once the
//! node's first fold is done, so are those of the cameras that do not run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use vigil_schemas::events::CameraStatus;
use vigil_schemas::events::track_stream;
use vigil_schemas::{
    AppearanceEvent, CalibrationEvent, CameraEvent, DomainEvent, EventMeta, ExpectedVersion,
    StoreError, SubjectEvent,
};

use crate::appearances::{OpenTracks, interrupted};

use crate::camera_actor::{CameraActor, CameraMsg, OnOnline};
use crate::node::{CameraSpec, Ingest};
use crate::source::SourceError;

/// How long an actor whose lease went to another node may take to stop before it is killed.
const LEASE_STOP_GRACE: Duration = Duration::from_secs(2);

/// What the camera events say a camera should be doing.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraChange {
    /// Run with these settings (restarting the actor if they changed).
    Run(CameraSpec),
    /// Do not run.
    Stop {
        /// The camera.
        id: String,
        /// Why (`disabled`, `removed`).
        reason: String,
    },
}

/// Messages of the camera supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// The event store says so.
    Apply(CameraChange),
    /// A camera's actor receives frames: its backoff starts over.
    Online(String),
    /// Time to restart a failed camera (ignored when a newer start or stop came since).
    Restart {
        /// The camera.
        id: String,
        /// Which failure this restart is for.
        generation: u64,
    },
    /// The cameras with a running actor, sorted.
    Running(RpcReplyPort<Vec<String>>),
    /// The initial fold is done: end the open tracks of the cameras that do not run (disabled
    /// or removed while no node ran them); those that run were swept as they started.
    SweepIdle,
    /// The actor of a camera (tests reach it to make it fail).
    ActorOf(String, RpcReplyPort<Option<ActorRef<CameraMsg>>>),
    /// Stop every camera actor, recording `stopped`, and answer when done.
    Shutdown(RpcReplyPort<()>),
    /// The camera leases this node holds now (camera → fencing token), where cameras are
    /// leased to nodes: run those it wants, stop those it lost.
    Held(std::collections::BTreeMap<String, u64>),
}

struct Entry {
    spec: CameraSpec,
    actor: Option<ActorRef<CameraMsg>>,
    attempts: u32,
    generation: u64,
    /// It was receiving frames before its latest failure: reconnect failures report
    /// `offline`, not `error`, until it receives again.
    lost: bool,
    /// Its video file was read to the end: not restarted until its settings change.
    ended: bool,
    /// The fencing token of the lease its running actor started with (leased cameras).
    token: Option<u64>,
}

/// The camera supervisor.
pub struct CameraSupervisor;

/// Its state.
pub struct SupervisorState {
    ingest: Arc<Ingest>,
    cameras: HashMap<String, Entry>,
    follower: tokio::task::JoinHandle<()>,
    shutting_down: bool,
    /// The tracks the log says are open (folded by the follower).
    open: Arc<std::sync::Mutex<OpenTracks>>,
    /// The camera leases this node holds (camera → token), where cameras are leased.
    held: std::collections::BTreeMap<String, u64>,
    /// Forwards the lease keeper's changes as [`SupervisorMsg::Held`].
    lease_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for SupervisorState {
    fn drop(&mut self) {
        self.follower.abort();
        if let Some(watch) = &self.lease_watch {
            watch.abort();
        }
    }
}

impl SupervisorState {
    /// Whether camera `id` runs only where its lease is (cameras are leased to nodes and it
    /// pulls from a source).
    fn leased(&self, id: &str) -> bool {
        self.ingest.leases.is_some()
            && self
                .cameras
                .get(id)
                .is_some_and(|e| crate::node::leased_source(&e.spec.source))
    }

    /// Tells the lease keeper which cameras this node would run.
    fn announce_wanted(&self) {
        if let Some(leases) = &self.ingest.leases {
            let wanted = self
                .cameras
                .iter()
                .filter(|(_, e)| !e.ended && crate::node::leased_source(&e.spec.source))
                .map(|(id, _)| id.clone())
                .collect();
            leases.want(wanted);
        }
    }

    /// Whether this node may record camera `id`'s status: it runs it (or every camera), and
    /// the handler fenced by its token to do it with.
    fn status_handler(&self, id: &str) -> Option<crate::handler::CommandHandler> {
        if !self.leased(id) {
            return Some(self.ingest.handler.clone());
        }
        let token = self.cameras.get(id)?.token?;
        Some(self.ingest.handler_for(id, Some(token)))
    }
}

/// Folds camera events into what each camera should be doing.
#[derive(Default)]
struct Desired {
    cameras: HashMap<String, (bool, CameraSpec)>,
    /// Cameras whose video file ended after their latest registration or change: a restarted
    /// node does not read them again.
    ended: std::collections::HashSet<String>,
}

impl Desired {
    fn apply(&mut self, event: &CameraEvent) -> Option<CameraChange> {
        match event {
            CameraEvent::Registered(e) => {
                let spec = CameraSpec {
                    id: e.camera_id.clone(),
                    source: e.source.clone(),
                    sample_fps: e.sample_fps,
                    features: e.features,
                    zones: e.zones.clone(),
                };
                self.cameras.insert(e.camera_id.clone(), (e.enabled, spec));
            }
            CameraEvent::Updated(e) => {
                let (enabled, spec) = self.cameras.get_mut(&e.camera_id)?;
                if let Some(v) = e.enabled {
                    *enabled = v;
                }
                if let Some(v) = &e.source {
                    spec.source = v.clone();
                }
                if let Some(v) = e.sample_fps {
                    spec.sample_fps = v;
                }
                if let Some(v) = &e.zones {
                    spec.zones = v.clone();
                }
                if let Some(v) = e.features {
                    spec.features = v;
                }
            }
            CameraEvent::Removed(e) => {
                self.cameras.remove(&e.camera_id);
                return Some(CameraChange::Stop {
                    id: e.camera_id.clone(),
                    reason: "camera removed".into(),
                });
            }
            CameraEvent::StatusChanged(e) => {
                if e.status == CameraStatus::Ended {
                    self.ended.insert(e.camera_id.clone());
                }
                return None;
            }
        }
        let id = match event {
            CameraEvent::Registered(e) => &e.camera_id,
            CameraEvent::Updated(e) => &e.camera_id,
            _ => return None,
        };
        self.ended.remove(id);
        Some(self.change_of(id))
    }

    fn change_of(&self, id: &str) -> CameraChange {
        match self.cameras.get(id) {
            Some((true, spec)) => CameraChange::Run(spec.clone()),
            _ => CameraChange::Stop {
                id: id.to_string(),
                reason: "camera disabled".into(),
            },
        }
    }
}

fn decode_camera(event: &vigil_schemas::RecordedEvent) -> Option<CameraEvent> {
    CameraEvent::from_recorded(event)
        .inspect_err(
            |e| tracing::warn!(position = event.position, error = %e, "undecodable camera event"),
        )
        .ok()
        .flatten()
}

/// Applies a `calibration.changed` event to the node's calibration and subject events to its
/// gallery.
fn apply_calibration(ingest: &Ingest, event: &vigil_schemas::RecordedEvent) {
    // Matches are the most frequent subject events and change no gallery: not decoded.
    if event.event_type == "subject.matched" {
        return;
    }
    match SubjectEvent::from_recorded(event) {
        Ok(Some(e)) => return ingest.apply_subject(&e),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(position = event.position, error = %e, "undecodable subject event");
            return;
        }
    }
    match CalibrationEvent::from_recorded(event) {
        Ok(Some(CalibrationEvent::Changed(e))) => ingest.set_calibration(e.calibration),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(position = event.position, error = %e, "undecodable calibration event")
        }
    }
}

/// Folds a track's start or end into `open`.
fn apply_track(open: &std::sync::Mutex<OpenTracks>, event: &vigil_schemas::RecordedEvent) {
    if !event.event_type.starts_with("appearance.") {
        return;
    }
    match AppearanceEvent::from_recorded(event) {
        Ok(Some(e)) => open.lock().expect("open tracks lock").apply(&e),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(position = event.position, error = %e, "undecodable appearance event")
        }
    }
}

/// Reads every camera, calibration and track event, tells the supervisor the resulting set of
/// cameras, then follows `$all`.
async fn follow(
    ingest: Arc<Ingest>,
    supervisor: ActorRef<SupervisorMsg>,
    open: Arc<std::sync::Mutex<OpenTracks>>,
) {
    let store = ingest.handler.store().clone();
    let mut desired = Desired::default();
    let mut after = 0;
    let head = loop {
        match store.head_position().await {
            Ok(head) => break head,
            Err(e) => {
                tracing::warn!(error = %e, "camera supervisor cannot read the event store; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    while after < head {
        match store.read_all(after, 1000).await {
            Ok(page) if page.is_empty() => break,
            Ok(page) => {
                for event in &page {
                    if let Some(e) = decode_camera(event) {
                        desired.apply(&e);
                    }
                    apply_calibration(&ingest, event);
                    apply_track(&open, event);
                    after = event.position;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "camera supervisor cannot read the event store; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let mut ids: Vec<_> = desired.cameras.keys().cloned().collect();
    ids.sort();
    for id in ids {
        if desired.ended.contains(&id) {
            tracing::info!(camera = %id, "its video file was read to the end; not started");
            continue;
        }
        if let CameraChange::Run(spec) = desired.change_of(&id)
            && supervisor
                .cast(SupervisorMsg::Apply(CameraChange::Run(spec)))
                .is_err()
        {
            return;
        }
    }
    if supervisor.cast(SupervisorMsg::SweepIdle).is_err() {
        return;
    }
    loop {
        let mut live = store.subscribe_all(after);
        while let Some(batch) = live.next().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "camera supervisor lost its subscription; resubscribing");
                    break;
                }
            };
            for event in &batch {
                after = event.position;
                apply_calibration(&ingest, event);
                apply_track(&open, event);
                if let Some(change) = decode_camera(event).and_then(|e| desired.apply(&e))
                    && supervisor.cast(SupervisorMsg::Apply(change)).is_err()
                {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl CameraSupervisor {
    /// Ends the tracks the log says are open on camera `id` (`interrupted`). Called before its
    /// actor starts, when no actor of this node can end them any more. A track whose end is
    /// already stored (the follower had not folded it yet) is left as it is; when the store is
    /// down the rest wait for the next start.
    async fn sweep(state: &SupervisorState, id: &str) {
        let mut tracks = state.open.lock().expect("open tracks lock").take(id);
        if tracks.is_empty() {
            return;
        }
        let meta = EventMeta {
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
            actor: "system:track-sweep".into(),
        };
        let store = state.ingest.handler.store();
        let mut ended = 0;
        while let Some(started) = tracks.first() {
            let event = AppearanceEvent::Ended(interrupted(started));
            match store
                .append(
                    &track_stream(id, &started.track_id),
                    ExpectedVersion::Exact(1),
                    vec![event.to_new_event(chrono::Utc::now(), &meta)],
                )
                .await
            {
                Ok(_) => ended += 1,
                Err(StoreError::WrongExpectedVersion { .. }) => {}
                Err(e) => {
                    tracing::warn!(camera = id, error = %e, open = tracks.len(), "could not end the tracks left open; trying again at the next start");
                    break;
                }
            }
            tracks.remove(0);
        }
        state
            .ingest
            .tracks_swept
            .fetch_add(ended, std::sync::atomic::Ordering::Relaxed);
        if ended > 0 {
            tracing::info!(
                camera = id,
                tracks = ended,
                "ended the tracks a stopped actor left open"
            );
        }
        state.open.lock().expect("open tracks lock").restore(tracks);
    }

    async fn start_camera(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        id: &str,
    ) -> Result<(), ActorProcessingErr> {
        if !state.cameras.contains_key(id) {
            return Ok(());
        }
        let token = state.held.get(id).copied();
        if state.leased(id) && token.is_none() {
            // Another node runs it (or will): started here when this node gets its lease
            // (`apply_held`), with no restart pending.
            if let Some(entry) = state.cameras.get_mut(id) {
                entry.token = None;
                entry.attempts = 0;
                entry.generation += 1;
            }
            return Ok(());
        }
        Self::sweep(state, id).await;
        let Some(entry) = state.cameras.get_mut(id) else {
            return Ok(());
        };
        entry.token = token;
        // Nothing received yet by this start (how a later failure tells `offline` from `error`).
        let runtime = state.ingest.runtime(id);
        *runtime.source.lock().expect("lock") = String::new();
        *runtime.finished.lock().expect("lock") = None;
        entry.ended = false;
        let supervisor = myself.clone();
        let online: OnOnline = Arc::new(move |id: &str| {
            let _ = supervisor.cast(SupervisorMsg::Online(id.to_string()));
        });
        let args = (state.ingest.clone(), entry.spec.clone(), online, token);
        match Actor::spawn_linked(None, CameraActor, args, myself.get_cell()).await {
            Ok((actor, _)) => entry.actor = Some(actor),
            Err(e) => {
                // Cannot happen with today's pre_start, which does not fail; treated as a failure.
                let reason = format!("actor did not start: {e}");
                Self::failed(myself, state, id, reason, false).await?;
            }
        }
        Ok(())
    }

    /// Records a failure and schedules the restart. A source that stops after delivering
    /// frames makes the camera `offline` (and failed reconnects keep it so); anything else —
    /// a source that never delivered, a panic, the models failing — is an `error`.
    async fn failed(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        id: &str,
        reason: String,
        source_failed: bool,
    ) -> Result<(), ActorProcessingErr> {
        let Some(entry) = state.cameras.get_mut(id) else {
            return Ok(());
        };
        entry.actor = None;
        let runtime = state.ingest.runtime(id);
        let was_receiving = !runtime.source.lock().expect("lock").is_empty();
        entry.lost = source_failed && (entry.lost || was_receiving);
        let delay = state.ingest.backoff.delay(entry.attempts);
        entry.attempts += 1;
        entry.generation += 1;
        let generation = entry.generation;
        let status = if entry.lost {
            CameraStatus::Offline
        } else {
            CameraStatus::Error
        };
        tracing::warn!(camera = id, %reason, retry_in = ?delay, "camera actor failed");
        if let Some(handler) = state.status_handler(id)
            && let Err(e) = state
                .ingest
                .report_status_via(
                    &handler,
                    id,
                    status,
                    format!("{reason}; retrying in {delay:?}"),
                )
                .await
        {
            tracing::error!(camera = id, error = %e, "could not record a camera status");
        }
        myself.send_after(delay, {
            let id = id.to_string();
            move || SupervisorMsg::Restart { id, generation }
        });
        Ok(())
    }

    /// Records that a camera's video file ended; it is not restarted.
    async fn ended(state: &mut SupervisorState, id: &str, reason: String) {
        let Some(entry) = state.cameras.get_mut(id) else {
            return;
        };
        entry.actor = None;
        entry.ended = true;
        entry.attempts = 0;
        entry.generation += 1;
        if let Some(handler) = state.status_handler(id)
            && let Err(e) = state
                .ingest
                .report_status_via(&handler, id, CameraStatus::Ended, reason)
                .await
        {
            tracing::error!(camera = id, error = %e, "could not record a camera status");
        }
        // An ended camera is not wanted any more: its lease goes back.
        state.announce_wanted();
    }

    async fn stop_camera(state: &mut SupervisorState, id: &str, reason: &str) {
        // Recorded by the node that runs it (where cameras are leased, this one only when it
        // holds the lease).
        let handler = state.status_handler(id);
        let Some(entry) = state.cameras.remove(id) else {
            return;
        };
        if let Some(actor) = entry.actor {
            let _ = actor
                .stop_and_wait(Some(reason.to_string()), Some(Duration::from_secs(10)))
                .await;
        }
        state.announce_wanted();
        if let Some(handler) = handler
            && let Err(e) = state
                .ingest
                .report_status_via(&handler, id, CameraStatus::Stopped, reason.to_string())
                .await
        {
            tracing::warn!(camera = id, error = %e, "could not record a camera status");
        }
    }

    /// Runs the leased cameras this node now holds and stops those it lost (without a status:
    /// the node that took one records it). A camera waiting for a restart after a failure
    /// is left to that restart.
    async fn apply_held(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        held: std::collections::BTreeMap<String, u64>,
    ) -> Result<(), ActorProcessingErr> {
        state.held = held;
        let mut ids: Vec<String> = state.cameras.keys().cloned().collect();
        ids.sort();
        for id in ids {
            if !state.leased(&id) {
                continue;
            }
            let now = state.held.get(&id).copied();
            let Some(entry) = state.cameras.get_mut(&id) else {
                continue;
            };
            let running = entry.actor.is_some();
            if running && entry.token == now {
                continue;
            }
            if running {
                let actor = entry.actor.take().expect("running");
                entry.token = None;
                entry.generation += 1;
                tracing::info!(camera = %id, "this node no longer holds the camera's lease; stopping its actor");
                // Its frames are skipped from now on (`Ingest::holds_lease`); an actor still busy
                // with one after a moment is killed rather than holding the supervisor up.
                if actor
                    .stop_and_wait(Some("lease lost".into()), Some(LEASE_STOP_GRACE))
                    .await
                    .is_err()
                {
                    tracing::warn!(camera = %id, "the camera's actor did not stop in time; killing it");
                    let _ = actor.kill_and_wait(Some(Duration::from_secs(5))).await;
                }
            } else if entry.ended || entry.attempts > 0 {
                continue;
            }
            if now.is_some() {
                tracing::info!(camera = %id, token = now, "this node took the camera's lease; starting its actor");
                Self::start_camera(myself, state, &id).await?;
            }
        }
        Ok(())
    }
}

impl Actor for CameraSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Ingest>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        ingest: Arc<Ingest>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let open = Arc::new(std::sync::Mutex::new(OpenTracks::default()));
        let lease_watch = ingest.leases.as_ref().map(|leases| {
            let mut held = leases.held();
            let supervisor = myself.clone();
            tokio::spawn(async move {
                loop {
                    let now = held.borrow_and_update().clone();
                    if supervisor.cast(SupervisorMsg::Held(now)).is_err() {
                        return;
                    }
                    if held.changed().await.is_err() {
                        return;
                    }
                }
            })
        });
        let follower = tokio::spawn(follow(ingest.clone(), myself, open.clone()));
        Ok(SupervisorState {
            ingest,
            cameras: HashMap::new(),
            follower,
            shutting_down: false,
            open,
            held: Default::default(),
            lease_watch,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Apply(_) if state.shutting_down => {}
            SupervisorMsg::Apply(CameraChange::Run(spec)) => {
                let id = spec.id.clone();
                if let Some(entry) = state.cameras.get(&id) {
                    // Any change of an ended camera reads its file again.
                    if entry.spec == spec && !entry.ended {
                        return Ok(());
                    }
                    // New settings: stop the old actor, start afresh.
                    if let Some(actor) = state.cameras.get_mut(&id).and_then(|e| e.actor.take()) {
                        let _ = actor
                            .stop_and_wait(
                                Some("settings changed".into()),
                                Some(Duration::from_secs(10)),
                            )
                            .await;
                    }
                }
                let generation = state.cameras.get(&id).map_or(0, |e| e.generation + 1);
                state.cameras.insert(
                    id.clone(),
                    Entry {
                        spec,
                        actor: None,
                        attempts: 0,
                        generation,
                        lost: false,
                        ended: false,
                        token: None,
                    },
                );
                state.announce_wanted();
                Self::start_camera(&myself, state, &id).await?;
            }
            SupervisorMsg::Apply(CameraChange::Stop { id, reason }) => {
                Self::stop_camera(state, &id, &reason).await;
            }
            SupervisorMsg::Online(id) => {
                if let Some(entry) = state.cameras.get_mut(&id) {
                    entry.attempts = 0;
                    entry.lost = false;
                }
            }
            SupervisorMsg::Restart { id, generation } => {
                let due = state
                    .cameras
                    .get(&id)
                    .is_some_and(|e| e.generation == generation && e.actor.is_none());
                if due && !state.shutting_down {
                    Self::start_camera(&myself, state, &id).await?;
                }
            }
            SupervisorMsg::Running(reply) => {
                let mut ids: Vec<String> = state
                    .cameras
                    .iter()
                    .filter(|(_, e)| e.actor.is_some())
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.sort();
                let _ = reply.send(ids);
            }
            SupervisorMsg::SweepIdle => {
                let idle: Vec<String> = state
                    .open
                    .lock()
                    .expect("open tracks lock")
                    .cameras()
                    .filter(|id| !state.cameras.contains_key(*id))
                    .map(str::to_string)
                    .collect();
                for id in idle {
                    Self::sweep(state, &id).await;
                }
            }
            SupervisorMsg::Held(held) => {
                if !state.shutting_down {
                    Self::apply_held(&myself, state, held).await?;
                }
            }
            SupervisorMsg::ActorOf(id, reply) => {
                let _ = reply.send(state.cameras.get(&id).and_then(|e| e.actor.clone()));
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let ids: Vec<String> = state.cameras.keys().cloned().collect();
                for id in ids {
                    Self::stop_camera(state, &id, "server shutting down").await;
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason, source_failed) = match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let source_failed = error.downcast_ref::<SourceError>().is_some();
                (cell, error.to_string(), source_failed)
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                reason.unwrap_or_else(|| "actor stopped".to_string()),
                false,
            ),
            _ => return Ok(()),
        };
        let id = state
            .cameras
            .iter()
            .find(|(_, e)| {
                e.actor
                    .as_ref()
                    .is_some_and(|a| a.get_id() == cell.get_id())
            })
            .map(|(id, _)| id.clone());
        // Actors the supervisor stopped itself are no longer in the table.
        let Some(id) = id else { return Ok(()) };
        let finished = state
            .ingest
            .runtime(&id)
            .finished
            .lock()
            .expect("lock")
            .take();
        match finished {
            Some(why) => Self::ended(state, &id, why).await,
            None => Self::failed(&myself, state, &id, reason, source_failed).await?,
        }
        Ok(())
    }
}

/// Messages of the root actor.
#[derive(Debug)]
pub enum RootMsg {
    /// The camera supervisor, once started.
    Cameras(RpcReplyPort<Option<ActorRef<SupervisorMsg>>>),
}

/// The root of the tree: owns the camera supervisor and restarts it if it fails.
pub struct Root;

/// Its state.
pub struct RootState {
    ingest: Arc<Ingest>,
    cameras: Option<ActorRef<SupervisorMsg>>,
}

impl Actor for Root {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = Arc<Ingest>;

    async fn pre_start(
        &self,
        myself: ActorRef<RootMsg>,
        ingest: Arc<Ingest>,
    ) -> Result<RootState, ActorProcessingErr> {
        let (cameras, _) =
            Actor::spawn_linked(None, CameraSupervisor, ingest.clone(), myself.get_cell()).await?;
        Ok(RootState {
            ingest,
            cameras: Some(cameras),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<RootMsg>,
        message: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::Cameras(reply) => {
                let _ = reply.send(state.cameras.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(_, error) = event {
            tracing::error!(%error, "camera supervisor failed; restarting it");
            let (cameras, _) = Actor::spawn_linked(
                None,
                CameraSupervisor,
                state.ingest.clone(),
                myself.get_cell(),
            )
            .await?;
            state.cameras = Some(cameras);
        }
        Ok(())
    }
}

/// A running supervision tree.
#[derive(Clone)]
pub struct Supervision {
    /// The root actor.
    pub root: ActorRef<RootMsg>,
    /// What its cameras share.
    pub ingest: Arc<Ingest>,
}

impl std::fmt::Debug for Supervision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervision").finish_non_exhaustive()
    }
}

impl Supervision {
    /// Starts the root, the camera supervisor and (through the event store) the cameras.
    pub async fn start(ingest: Arc<Ingest>) -> Result<Self, ractor::SpawnErr> {
        let (root, _) = Actor::spawn(None, Root, ingest.clone()).await?;
        Ok(Self { root, ingest })
    }

    async fn cameras(&self) -> Option<ActorRef<SupervisorMsg>> {
        ractor::call!(self.root, RootMsg::Cameras).ok().flatten()
    }

    /// The cameras with a running actor on this node, sorted.
    pub async fn running(&self) -> Vec<String> {
        match self.cameras().await {
            Some(s) => ractor::call!(s, SupervisorMsg::Running).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// The actor of a camera, while one runs.
    pub async fn actor_of(&self, camera_id: &str) -> Option<ActorRef<CameraMsg>> {
        let s = self.cameras().await?;
        ractor::call!(s, SupervisorMsg::ActorOf, camera_id.to_string())
            .ok()
            .flatten()
    }

    /// Stops every camera (recording `stopped`) and the tree.
    pub async fn shutdown(&self) {
        if let Some(s) = self.cameras().await {
            let _ = ractor::call!(s, SupervisorMsg::Shutdown);
        }
        self.root.stop(Some("shutdown".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_schemas::events::{
        CameraFeatures, CameraRegistered, CameraRemoved, CameraStatusChanged, CameraUpdated,
    };

    /// `camera.registered` of camera `id` on `source`, at 2 fps with no feature.
    fn registered(id: &str, source: &str, enabled: bool) -> CameraEvent {
        CameraEvent::Registered(CameraRegistered {
            camera_id: id.into(),
            name: id.to_uppercase(),
            source: source.into(),
            enabled,
            sample_fps: 2.0,
            features: CameraFeatures::default(),
            prompt: String::new(),
            zones: vec![],
        })
    }

    #[test]
    fn camera_events_fold_into_what_should_run() {
        let mut desired = Desired::default();
        let registered = registered("a", "push", false);
        assert!(matches!(
            desired.apply(&registered),
            Some(CameraChange::Stop { .. })
        ));
        let enable = CameraEvent::Updated(CameraUpdated {
            camera_id: "a".into(),
            enabled: Some(true),
            sample_fps: Some(5.0),
            ..Default::default()
        });
        match desired.apply(&enable) {
            Some(CameraChange::Run(spec)) => assert_eq!(spec.sample_fps, 5.0),
            other => panic!("expected run, got {other:?}"),
        }
        let removed = CameraEvent::Removed(CameraRemoved {
            camera_id: "a".into(),
        });
        assert!(
            matches!(desired.apply(&removed), Some(CameraChange::Stop { reason, .. }) if reason == "camera removed")
        );
        assert!(desired.cameras.is_empty());
    }

    #[test]
    fn an_ended_file_camera_stays_ended_until_its_settings_change() {
        let mut desired = Desired::default();
        let registered = registered("clip", "file:///videos/clip.mp4", true);
        assert!(matches!(
            desired.apply(&registered),
            Some(CameraChange::Run(_))
        ));
        let ended = CameraEvent::StatusChanged(CameraStatusChanged {
            camera_id: "clip".into(),
            status: CameraStatus::Ended,
            reason: "end of the file".into(),
        });
        assert_eq!(desired.apply(&ended), None);
        assert!(desired.ended.contains("clip"), "a restart leaves it alone");
        let renamed = CameraEvent::Updated(CameraUpdated {
            camera_id: "clip".into(),
            name: Some("Clip 2".into()),
            ..Default::default()
        });
        assert!(matches!(
            desired.apply(&renamed),
            Some(CameraChange::Run(_))
        ));
        assert!(desired.ended.is_empty(), "a change reads the file again");
    }
}
