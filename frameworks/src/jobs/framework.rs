//! The jobs framework on the public SDK: a [`Scheduler`] over a [`Book`], keeping its state in
//! the framework store so that it survives a restart of its process or a master failover.
//!
//! Exactly once: an instance is recorded as launched in the store before its LAUNCH is sent
//! and an update is acknowledged only once its effect is in the store (the master redelivers
//! unacknowledged updates). After a restart the framework reads its state back and
//! reconciles every instance recorded as launched; the master answers each once it knows
//! (it waits for agents that have not re-registered), so an instance is either running once
//! or recorded as ended. An attempt whose launch reached no agent is answered UNKNOWN and
//! launched again without using a retry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_proto::TaskStatus;
use corral_proto::jobs::{JobsAccess, LaunchPacer, Unpaced};
use corral_proto::tls::Dialer;
use corral_scheduler::{
    Driver, FrameworkConfig, FrameworkId, Offer, OfferId, Scheduler, SdkError, StoreEntry, TaskId,
    TaskInfo,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::book::Book;
use super::record::{
    JOB_PREFIX, JobRecord, OUTPUTS_PREFIX, OutputsRecord, SHARD_PREFIX, ShardRecord, Write,
    split_key,
};
use crate::spec::JobSpec;

pub use corral_proto::jobs::{FRAMEWORK_ID, JOBS_ADDRESS_LABEL};
/// How long the master keeps the framework's tasks while it is away (Marathon's default).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often changes are written to the store (and their updates acknowledged).
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// Launched instances not heard of for this long are reconciled again.
const RECONCILE_AGAIN_MS: u64 = 2_000;
/// Tasks named in one reconciliation call.
const RECONCILE_BATCH: usize = 5_000;
/// How long offers are declined while the framework reads its state back.
const NOT_READY_DECLINE: Duration = Duration::from_secs(1);

/// A running jobs framework: what the Jobs service calls. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobsFramework {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    book: Mutex<Book>,
    /// Held while writing to the store, so that writes land in the order they were taken.
    flushing: tokio::sync::Mutex<()>,
    /// Writes that failed, retried first by the next flush (a newer write of a key wins).
    retry: Mutex<BTreeMap<String, Write>>,
    /// Updates in the book and not yet in the store: acknowledged after the next flush.
    unacked: Mutex<Vec<TaskStatus>>,
    /// Launches planned and recorded in the book, sent once a flush has stored them: the
    /// launches of every offer round that came during one store write go after the next
    /// (a group commit), so a slow write does not hold the offers back.
    launches: Mutex<Vec<(OfferId, Vec<TaskInfo>)>>,
    /// True once subscribed and the state is read back.
    ready: watch::Sender<bool>,
    /// The current run's.
    driver: Mutex<Option<Driver>>,
    wake: Notify,
    suppressed: AtomicBool,
    /// The roles the framework subscribes in: `*` until its state is read back, then also
    /// those of its jobs (growing as jobs name new ones; dropped on the next start).
    roles: Mutex<BTreeSet<String>>,
    /// Where its Jobs service is served when not on the master's port.
    serves_at: Mutex<Option<String>>,
    /// Paces each owner's launches (see [`JobsFramework::pace_launches`]).
    pacer: Mutex<Arc<dyn LaunchPacer>>,
}

/// Why the Jobs service could not do something.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("the jobs framework is starting (subscribing and reading its state back)")]
    NotReady,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    UnknownDependency(String),
    #[error("no job is named {0:?}")]
    NotFound(String),
    #[error("{0}")]
    NotApplicable(String),
    #[error("the jobs framework could not record the change: {0}")]
    Store(SdkError),
    /// The caller may not (see [`JobsAccess`]).
    #[error("{}", .0.message())]
    Refused(tonic::Status),
}

impl From<tonic::Status> for JobsError {
    fn from(refusal: tonic::Status) -> Self {
        Self::Refused(refusal)
    }
}

impl Default for JobsFramework {
    fn default() -> Self {
        Self::new()
    }
}

impl JobsFramework {
    /// A framework not running yet: [`JobsFramework::run`] runs it. The Jobs service can be
    /// built on it at once (it answers UNAVAILABLE until the framework is ready).
    pub fn new() -> Self {
        let (ready, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                book: Mutex::new(Book::default()),
                flushing: tokio::sync::Mutex::new(()),
                retry: Mutex::new(BTreeMap::new()),
                unacked: Mutex::new(Vec::new()),
                launches: Mutex::new(Vec::new()),
                ready,
                driver: Mutex::new(None),
                wake: Notify::new(),
                suppressed: AtomicBool::new(false),
                roles: Mutex::new(BTreeSet::new()),
                serves_at: Mutex::new(None),
                pacer: Mutex::new(Arc::new(Unpaced)),
            }),
        }
    }

    /// Runs the framework against `masters` (as the SDK takes them), reached with `dialer`, until
    /// [`JobsFramework::stop`]: subscribes, reads its state back from its store, and runs
    /// jobs. Each run starts from the store, so a framework stopped (its master lost the
    /// lead) and run again (on the new leader) loses nothing.
    pub async fn run(&self, masters: Vec<String>, dialer: Dialer) -> Result<(), SdkError> {
        *self.book() = Book::default();
        lock(&self.inner.retry).clear();
        lock(&self.inner.unacked).clear();
        lock(&self.inner.launches).clear();
        let mut config = FrameworkConfig::new(FRAMEWORK_ID, masters);
        config.framework_id = FrameworkId::new(FRAMEWORK_ID).ok();
        config.user = "corral".into();
        config.failover_timeout = FAILOVER_TIMEOUT;
        config.auto_acknowledge = false;
        config.token = dialer.token().clone();
        config.tls = dialer.tls().cloned();
        if let Some(address) = lock(&self.inner.serves_at).clone() {
            config.labels.insert(JOBS_ADDRESS_LABEL.to_owned(), address);
        }
        let roles = BTreeSet::from(["*".to_owned()]);
        config.roles = roles.iter().cloned().collect();
        *lock(&self.inner.roles) = roles;
        let (driver, handle) = corral_scheduler::spawn(
            config,
            Callbacks {
                jobs: self.clone(),
                loaded: false,
            },
        );
        *lock(&self.inner.driver) = Some(driver.clone());
        let flusher = tokio::spawn(self.clone().flush_forever(driver));
        let result = handle
            .await
            .unwrap_or_else(|e| Err(SdkError::Config(format!("the framework task failed: {e}"))));
        self.inner.ready.send_replace(false);
        *lock(&self.inner.driver) = None;
        let _ = flusher.await;
        result
    }

    /// Says (in the [`JOBS_ADDRESS_LABEL`] label, from the next run on) that its Jobs service
    /// is served at `address` rather than on the master's port.
    pub fn serve_at(&self, address: String) {
        *lock(&self.inner.serves_at) = Some(address);
    }

    /// Takes each launch of a job's tasks from its owner's launch rate, as the masters limit
    /// a principal's own launches; without it, launches are paced only by offers.
    pub fn pace_launches(&self, pacer: Arc<dyn LaunchPacer>) {
        *lock(&self.inner.pacer) = pacer;
    }

    /// Stops the framework (its tasks keep running; a later run picks them up).
    pub fn stop(&self) {
        if let Some(driver) = lock(&self.inner.driver).as_ref() {
            driver.stop();
        }
    }

    fn driver(&self) -> Result<Driver, JobsError> {
        if !*self.inner.ready.borrow() {
            return Err(JobsError::NotReady);
        }
        lock(&self.inner.driver).clone().ok_or(JobsError::NotReady)
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock is a bug; the book is still the best we have.
        self.inner
            .book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Submits the jobs of one spec file (already parsed) for the caller `access` decides
    /// about, recorded before this returns.
    pub(crate) async fn submit(
        &self,
        specs: Vec<crate::spec::JobSpec>,
        mut submission: super::record::Submission,
        access: &dyn JobsAccess,
    ) -> Result<Vec<corral_proto::v1::Job>, JobsError> {
        let driver = self.driver()?;
        submission.owner = access.principal().map(str::to_owned);
        let names = {
            let mut book = self.book();
            may_submit(&book, &specs, access)?;
            book.submit(specs, submission, now_ms())?
        };
        self.flush(&driver).await.map_err(JobsError::Store)?;
        self.subscribe_in_new_roles(&driver);
        self.want_offers(&driver).await;
        let book = self.book();
        Ok(names.iter().filter_map(|n| book.view(n)).collect())
    }

    /// Starts rolling updates of the services of one spec file, recorded before this
    /// returns.
    pub(crate) async fn update(
        &self,
        specs: Vec<crate::spec::JobSpec>,
        mut submission: super::record::Submission,
        access: &dyn JobsAccess,
    ) -> Result<Vec<corral_proto::v1::Job>, JobsError> {
        let driver = self.driver()?;
        let (names, kills) = {
            let mut book = self.book();
            // The jobs stay their owner's, whoever updates them.
            submission.owner = may_update(&book, &specs, access)?;
            book.update_services(specs, submission, now_ms())?
        };
        self.flush(&driver).await.map_err(JobsError::Store)?;
        kill_all(&driver, &kills).await;
        self.subscribe_in_new_roles(&driver);
        self.want_offers(&driver).await;
        let book = self.book();
        Ok(names.iter().filter_map(|n| book.view(n)).collect())
    }

    /// The principals jobs `names` belong to (those that exist), or every job's.
    pub(crate) fn owners(&self, names: Option<&[&str]>) -> BTreeSet<Option<String>> {
        let book = self.book();
        match names {
            None => book.owners(),
            Some(names) => names
                .iter()
                .filter_map(|n| Some(book.owner(n)?.map(str::to_owned)))
                .collect(),
        }
    }

    /// The jobs the caller sees.
    pub(crate) fn list(
        &self,
        access: &dyn JobsAccess,
    ) -> Result<Vec<corral_proto::v1::Job>, JobsError> {
        self.driver()?;
        let mut jobs = self.book().views();
        jobs.retain(|j| access.sees((!j.owner.is_empty()).then_some(j.owner.as_str())));
        Ok(jobs)
    }

    /// Job `name`, if the caller sees it.
    pub(crate) fn get(
        &self,
        name: &str,
        access: &dyn JobsAccess,
    ) -> Result<corral_proto::v1::Job, JobsError> {
        self.driver()?;
        let book = self.book();
        seen_owner(&book, name, access)?;
        book.view(name)
            .ok_or_else(|| JobsError::NotFound(name.to_owned()))
    }

    pub(crate) async fn kill(
        &self,
        name: &str,
        access: &dyn JobsAccess,
    ) -> Result<corral_proto::v1::Job, JobsError> {
        self.change(name, access, |book, now| {
            book.kill(name, now)
                .ok_or_else(|| JobsError::NotFound(name.to_owned()))
        })
        .await
    }

    /// Starts a run of a cron job now; returns the cron job.
    pub(crate) async fn run_now(
        &self,
        name: &str,
        access: &dyn JobsAccess,
    ) -> Result<corral_proto::v1::Job, JobsError> {
        self.change(name, access, |book, now| {
            book.run_now(name, now)
                .map(|_| Vec::new())
                .map_err(|e| call_error(name, e))
        })
        .await
    }

    /// Scales a service.
    pub(crate) async fn scale(
        &self,
        name: &str,
        instances: u64,
        access: &dyn JobsAccess,
    ) -> Result<corral_proto::v1::Job, JobsError> {
        self.change(name, access, |book, _| {
            book.scale(name, instances).map_err(|e| call_error(name, e))
        })
        .await
    }

    /// Suspends or resumes a cron job.
    pub(crate) async fn set_suspended(
        &self,
        name: &str,
        suspended: bool,
        access: &dyn JobsAccess,
    ) -> Result<corral_proto::v1::Job, JobsError> {
        self.change(name, access, |book, now| {
            book.set_suspended(name, suspended, now)
                .map(|()| Vec::new())
                .map_err(|e| call_error(name, e))
        })
        .await
    }

    /// Applies `change` to job `name` in the book (if the caller may change it), stores it,
    /// kills the tasks it names and asks for offers if work waits; returns the job.
    async fn change(
        &self,
        name: &str,
        access: &dyn JobsAccess,
        change: impl FnOnce(&mut Book, u64) -> Result<Vec<TaskId>, JobsError>,
    ) -> Result<corral_proto::v1::Job, JobsError> {
        let driver = self.driver()?;
        let kills = {
            let mut book = self.book();
            access.may_manage(seen_owner(&book, name, access)?, name)?;
            change(&mut book, now_ms())?
        };
        self.flush(&driver).await.map_err(JobsError::Store)?;
        kill_all(&driver, &kills).await;
        self.want_offers(&driver).await;
        self.get(name, access)
    }

    /// Starts the cron runs that are due (and skips the late ones).
    async fn tick(&self, driver: &Driver) {
        let now = now_ms();
        let kills = {
            let mut book = self.book();
            if book.next_wakeup().is_none_or(|t| t > now) {
                return;
            }
            book.tick(now)
        };
        kill_all(driver, &kills).await;
        self.want_offers(driver).await;
    }

    /// Writes what changed to the store, then sends the launches it recorded and
    /// acknowledges the updates it covers. Writes that fail are retried by the next flush,
    /// and their launches and acknowledgements wait for it.
    async fn flush(&self, driver: &Driver) -> Result<(), SdkError> {
        let _order = self.inner.flushing.lock().await;
        let (writes, acks, launches) = {
            let mut book = self.book();
            let mut writes = std::mem::take(&mut *lock(&self.inner.retry));
            for w in book.take_writes() {
                writes.insert(w.key().to_owned(), w);
            }
            let acks = std::mem::take(&mut *lock(&self.inner.unacked));
            let launches = std::mem::take(&mut *lock(&self.inner.launches));
            (writes, acks, launches)
        };
        // Records before deletions: an ended job's record (with its final counts) is stored
        // before its shards go, so a crash between the two never leaves a job without its
        // instances.
        let (puts, deletes): (Vec<Write>, Vec<Write>) = writes
            .into_values()
            .partition(|w| matches!(w, Write::Put(..)));
        let mut failure = self.write_all(driver, puts).await;
        if failure.is_none() {
            failure = self.write_all(driver, deletes).await;
        } else {
            let mut retry = lock(&self.inner.retry);
            for write in deletes {
                retry.entry(write.key().to_owned()).or_insert(write);
            }
        }
        if let Some(error) = failure {
            tracing::warn!(%error, "jobs framework: store write failed; retrying");
            lock(&self.inner.unacked).splice(0..0, acks);
            lock(&self.inner.launches).splice(0..0, launches);
            return Err(error);
        }
        for (offer, tasks) in launches {
            // A launch the master did not take is reconciled later (answered UNKNOWN and
            // retried).
            let ids: Vec<TaskId> = tasks.iter().map(|t| t.id.clone()).collect();
            if let Err(error) = driver.launch(&[offer], tasks).await {
                tracing::warn!(%error, "jobs framework: launch failed; reconciling later");
            }
            self.book().sent(&ids, now_ms());
        }
        for status in &acks {
            driver.acknowledge_later(status);
        }
        Ok(())
    }

    /// Applies `writes` to the store at once; those that fail go to the retry set. Returns
    /// the last failure.
    async fn write_all(&self, driver: &Driver, writes: Vec<Write>) -> Option<SdkError> {
        let mut pending = JoinSet::new();
        for write in writes {
            let driver = driver.clone();
            pending.spawn(async move {
                let result = match &write {
                    Write::Put(key, value) => {
                        driver.store_put(key, value.clone(), None).await.map(drop)
                    }
                    Write::Delete(key) => driver.store_delete(key, None).await,
                };
                (write, result)
            });
        }
        let mut failure = None;
        while let Some(joined) = pending.join_next().await {
            let Ok((write, result)) = joined else {
                continue;
            };
            if let Err(error) = result {
                lock(&self.inner.retry)
                    .entry(write.key().to_owned())
                    .or_insert(write);
                failure = Some(error);
            }
        }
        failure
    }

    async fn flush_forever(self, driver: Driver) {
        let mut stopped = false;
        let mut next_reconcile = 0;
        while !stopped {
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(FLUSH_EVERY) => {}
                () = driver.stopped() => stopped = true,
            }
            if *self.inner.ready.borrow() {
                let now = now_ms();
                if now >= next_reconcile {
                    next_reconcile = now + RECONCILE_AGAIN_MS;
                    let unconfirmed = self.book().unconfirmed(now, RECONCILE_AGAIN_MS);
                    if let Err(error) = reconcile(&driver, &unconfirmed).await {
                        tracing::warn!(%error, "jobs framework: reconciliation failed");
                    }
                }
                self.tick(&driver).await;
                // A failure is logged and retried on the next round.
                let _ = self.flush(&driver).await;
            }
        }
    }

    /// Subscribes again when jobs name roles the framework is not in (the offers of a role
    /// are for that role's jobs).
    fn subscribe_in_new_roles(&self, driver: &Driver) {
        let wanted = self.book().roles();
        let mut roles = lock(&self.inner.roles);
        if wanted.is_subset(&roles) {
            return;
        }
        roles.extend(wanted);
        let list: Vec<String> = roles.iter().cloned().collect();
        drop(roles);
        tracing::info!(roles = ?list, "jobs framework: subscribing in its jobs' roles");
        if let Err(error) = driver.update_roles(list) {
            tracing::warn!(%error, "jobs framework: cannot change its roles");
        }
    }

    /// Revives offers when work is waiting and they are suppressed.
    async fn want_offers(&self, driver: &Driver) {
        let wants = self.book().wants_offers();
        if wants
            && self.inner.suppressed.swap(false, Ordering::SeqCst)
            && let Err(error) = driver.revive(&[]).await
        {
            tracing::warn!(%error, "jobs framework: revive failed");
            self.inner.suppressed.store(true, Ordering::SeqCst);
        }
    }

    /// Reads the jobs back from the store, then asks the master about every instance that
    /// was launched.
    async fn load(&self, driver: &Driver) -> Result<(), SdkError> {
        let jobs = driver.store_list(JOB_PREFIX).await?;
        let shards = driver.store_list(SHARD_PREFIX).await?;
        let outputs = driver.store_list(OUTPUTS_PREFIX).await?;
        let mut shards_of: BTreeMap<String, BTreeMap<u32, ShardRecord>> = BTreeMap::new();
        for entry in &shards {
            if let Some((job, shard)) = split_key(&entry.key, SHARD_PREFIX)
                && let Some(record) = decode::<ShardRecord>(entry)
            {
                shards_of
                    .entry(job.to_owned())
                    .or_default()
                    .insert(shard, record);
            }
        }
        let mut outputs_of: BTreeMap<String, BTreeMap<u32, Vec<corral_types::TaskOutput>>> =
            BTreeMap::new();
        for entry in &outputs {
            if let Some((job, index)) = split_key(&entry.key, OUTPUTS_PREFIX)
                && let Some(record) = decode::<OutputsRecord>(entry)
            {
                let files = record
                    .outputs
                    .into_iter()
                    .filter_map(|(path, size, digest)| {
                        Some(corral_types::TaskOutput {
                            path,
                            size,
                            digest: digest.parse().ok()?,
                        })
                    })
                    .collect();
                outputs_of
                    .entry(job.to_owned())
                    .or_default()
                    .insert(index, files);
            }
        }
        let launched = {
            let mut book = self.book();
            let now = now_ms();
            for entry in &jobs {
                let Some(record) = decode::<JobRecord>(entry) else {
                    continue;
                };
                let name = record.name.clone();
                let shards = shards_of.remove(&name).unwrap_or_default();
                let outputs = outputs_of.remove(&name).unwrap_or_default();
                if let Err(error) = book.restore(record, &shards, outputs) {
                    tracing::error!(job = %name, %error, "jobs framework: cannot restore a job; left out");
                }
            }
            book.restored(now);
            book.launched()
        };
        tracing::info!(
            jobs = jobs.len(),
            launched = launched.len(),
            "jobs framework: state read back"
        );
        reconcile(driver, &launched).await
    }
}

struct Callbacks {
    jobs: JobsFramework,
    loaded: bool,
}

#[async_trait::async_trait]
impl Scheduler for Callbacks {
    async fn subscribed(&mut self, driver: &Driver, _framework_id: &FrameworkId) {
        if self.loaded {
            // A new subscription: ask again about what is launched (updates the master
            // still holds are redelivered anyway).
            let launched = self.jobs.book().launched();
            if let Err(error) = reconcile(driver, &launched).await {
                tracing::warn!(%error, "jobs framework: reconciliation failed");
            }
        } else {
            match self.jobs.load(driver).await {
                Ok(()) => {
                    self.loaded = true;
                    self.jobs.inner.ready.send_replace(true);
                    self.jobs.subscribe_in_new_roles(driver);
                }
                Err(error) => {
                    // Nothing is launched until the state is back; the next subscription
                    // tries again.
                    tracing::error!(%error, "jobs framework: cannot read its state back");
                    return;
                }
            }
        }
        self.jobs.inner.suppressed.store(true, Ordering::SeqCst);
        self.jobs.want_offers(driver).await;
    }

    async fn offers(&mut self, driver: &Driver, offers: Vec<Offer>) {
        if !self.loaded {
            let ids: Vec<_> = offers.into_iter().map(|o| o.id).collect();
            let _ = driver.decline(&ids, NOT_READY_DECLINE).await;
            return;
        }
        let pacer = lock(&self.jobs.inner.pacer).clone();
        let (plan, wants) = {
            let mut book = self.jobs.book();
            let plan = book.plan(&offers, now_ms(), &*pacer);
            (plan, book.wants_offers())
        };
        if !plan.launches.is_empty() {
            // Sent by the flusher once stored (see `Inner::launches`).
            lock(&self.jobs.inner.launches).extend(plan.launches);
            self.jobs.inner.wake.notify_one();
        }
        if !plan.declines.is_empty() {
            let _ = driver.decline(&plan.declines, plan.refuse).await;
        }
        if !wants
            && !self.jobs.inner.suppressed.swap(true, Ordering::SeqCst)
            && let Err(error) = driver.suppress(&[]).await
        {
            tracing::warn!(%error, "jobs framework: suppress failed");
            self.jobs.inner.suppressed.store(false, Ordering::SeqCst);
        }
    }

    async fn status_update(&mut self, driver: &Driver, status: TaskStatus) {
        let kills = self.jobs.book().update(&status, now_ms());
        lock(&self.jobs.inner.unacked).push(status);
        self.jobs.inner.wake.notify_one();
        kill_all(driver, &kills).await;
        self.jobs.want_offers(driver).await;
    }

    async fn error(&mut self, _driver: &Driver, message: String) {
        tracing::error!(%message, "jobs framework: the master ended the subscription");
    }
}

impl From<super::book::SubmitError> for JobsError {
    fn from(e: super::book::SubmitError) -> Self {
        use super::book::SubmitError;
        match e {
            SubmitError::Invalid(m) => JobsError::Invalid(m),
            SubmitError::Exists(m) => JobsError::Exists(m),
            SubmitError::UnknownDependency(m) => JobsError::UnknownDependency(m),
            SubmitError::NotFound(m) => JobsError::NotFound(m),
            SubmitError::NotApplicable(m) => JobsError::NotApplicable(m),
        }
    }
}

fn call_error(name: &str, e: super::book::CallError) -> JobsError {
    use super::book::CallError;
    match e {
        CallError::NotFound => JobsError::NotFound(name.to_owned()),
        CallError::NotCron => JobsError::NotApplicable(format!("job {name} is not a cron job")),
        CallError::NotService => JobsError::NotApplicable(format!("job {name} is not a service")),
        CallError::Ended => JobsError::NotApplicable(format!("job {name} has ended")),
        CallError::TooMany => {
            JobsError::Invalid(format!("instances: at most {}", crate::spec::MAX_INSTANCES))
        }
    }
}

async fn reconcile(driver: &Driver, tasks: &[TaskId]) -> Result<(), SdkError> {
    for chunk in tasks.chunks(RECONCILE_BATCH) {
        let named: Vec<_> = chunk.iter().map(|t| (t.clone(), None)).collect();
        driver.reconcile(&named).await?;
    }
    Ok(())
}

async fn kill_all(driver: &Driver, tasks: &[TaskId]) {
    for task in tasks {
        if let Err(error) = driver.kill(task, None).await {
            tracing::warn!(%error, task_id = %task, "jobs framework: kill failed");
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(entry: &StoreEntry) -> Option<T> {
    match serde_json::from_slice(&entry.value) {
        Ok(v) => Some(v),
        Err(error) => {
            tracing::error!(key = %entry.key, %error, "jobs framework: unreadable record; ignored");
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The principal job `name` belongs to, if the caller `access` decides about sees it: a job
/// it does not see is one it cannot name.
fn seen_owner<'b>(
    book: &'b Book,
    name: &str,
    access: &dyn JobsAccess,
) -> Result<Option<&'b str>, JobsError> {
    match book.owner(name) {
        Some(owner) if access.sees(owner) => Ok(owner),
        _ => Err(JobsError::NotFound(name.to_owned())),
    }
}

/// Whether the caller `access` decides about may submit `specs`: run in their roles, take
/// their names (a job of that name it does not see is another principal's), and wait for
/// the jobs they depend on (which it must see).
fn may_submit(book: &Book, specs: &[JobSpec], access: &dyn JobsAccess) -> Result<(), JobsError> {
    for spec in specs {
        let name = &spec.name;
        access.may_run_in(spec.role_name(), name)?;
        match book.owner(name) {
            Some(owner) if !access.sees(owner) => {
                return Err(JobsError::Exists(format!(
                    "job {name} belongs to another principal: choose another name"
                )));
            }
            Some(owner) => access.may_manage(owner, name)?,
            None => access.may_manage(access.principal(), name)?,
        }
        for dep in spec.depends_on() {
            let in_file = specs.iter().any(|s| s.name == *dep);
            if !in_file && book.owner(dep).is_some_and(|owner| !access.sees(owner)) {
                return Err(JobsError::UnknownDependency(format!(
                    "{name}: depends_on {dep:?}, which is neither in the file nor a known job"
                )));
            }
        }
    }
    Ok(())
}

/// Whether the caller `access` decides about may update the jobs `specs` name; the principal
/// they belong to, which must be one for the whole file.
fn may_update(
    book: &Book,
    specs: &[JobSpec],
    access: &dyn JobsAccess,
) -> Result<Option<String>, JobsError> {
    let mut owners = BTreeSet::new();
    for spec in specs {
        let name = &spec.name;
        let owner = seen_owner(book, name, access)?;
        access.may_manage(owner, name)?;
        access.may_run_in(spec.role_name(), name)?;
        owners.insert(owner);
    }
    match owners.len() {
        0 | 1 => Ok(owners.pop_first().flatten().map(str::to_owned)),
        _ => Err(JobsError::Invalid(
            "the file updates jobs of different principals: update each principal's jobs \
             with a file of their own"
                .into(),
        )),
    }
}
