//! Content-addressed module cache: admission, compile once, persist, pre-instantiate. It holds
//! core modules and components alike ("module" below means either), told apart by header.
//!
//! ```text
//! launch ──► memory LRU (InstancePre) ──hit──► run
//!               │ miss (one loader per digest; concurrent launches wait for it)
//!               ▼
//!            <dir>/<engine compatibility>/<sha256>.cwasm ──ok──► deserialize (~0.5 ms)
//!               │ absent or unloadable
//!               ▼
//!            bytes (given, or <dir>/raw/<sha256>.wasm) ─► size cap ─► admission ─► compile
//!                                                         (validates)
//!                                                         ─► persist .wasm and .cwasm
//! ```
//!
//! Compiled code is keyed by the engine's compatibility hash, so an agent upgraded to another
//! wasmtime (or other settings) recompiles instead of loading stale code.
//!
//! Which digests have compiled code on disk is kept in memory too (read once when the cache
//! opens, then updated as code is written or discarded), so asking what the cache holds, as
//! every registration with the master does, costs no file system access.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use tokio::sync::OnceCell;
use wasmtime::component::Component;
use wasmtime::{Engine, InstancePre, Linker, Module, Precompiled};

/// Modules are named by the same digest everywhere in Corral.
use corral_types::{Digest, WasmBinary};

use crate::compile_slots::{CompileSlots, Owner};
use crate::compile_worker::{CompileWorker, WorkerError};
use crate::metrics::{AgentMetrics, CacheResult, DISK_HIT, MEMORY_HIT, MISS};

/// Why a module cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// Larger than the agent admits.
    #[error("module is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The admission limit.
        limit: u64,
    },
    /// Not a valid WebAssembly module for this agent (malformed, truncated, or using a
    /// proposal the agent does not enable).
    #[error("module {digest} is invalid: {reason}")]
    Invalid {
        /// Its digest.
        digest: Digest,
        /// The validator's or compiler's explanation.
        reason: String,
    },
    /// Asked for by digest, but neither compiled nor raw bytes are here.
    #[error("module {digest} is not in this agent's cache")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
    },
    /// The cache directory could not be read or written.
    #[error("module cache I/O failed: {reason}")]
    Io {
        /// The I/O error.
        reason: String,
    },
}

/// A compiled module ready to instantiate, or why it cannot be linked.
pub(crate) struct Prepared<T: 'static> {
    pub(crate) code: Code<T>,
    /// Whether the module can reach files ([`crate::guest::reaches_files`],
    /// [`crate::guest::component_reaches_files`]), worked out once.
    pub(crate) reaches_files: bool,
    /// Whether it was built with the task SDK ([`crate::sdk::uses_sdk`]).
    pub(crate) uses_sdk: bool,
}

/// Compiled code and its pre-instantiation (or why it does not link).
pub(crate) enum Code<T: 'static> {
    /// A core module: WASI preview 1, run through its entrypoint export.
    Module {
        module: Module,
        pre: Result<InstancePre<T>, String>,
    },
    /// A component: a `wasi:cli/command` run through `wasi:cli/run`, or any component whose
    /// function is invoked by name.
    Component {
        pre: Result<wasmtime::component::InstancePre<T>, String>,
    },
}

/// The linkers modules and components are pre-instantiated with.
pub(crate) struct Linkers<T: 'static> {
    pub(crate) module: Linker<T>,
    pub(crate) component: wasmtime::component::Linker<T>,
}

/// Compiled code before pre-instantiation.
enum Compiled {
    Module(Module),
    Component(Component),
}

/// Counters that show where launches found their module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Modules compiled from bytes.
    pub compiled: u64,
    /// Modules loaded from compiled code on disk.
    pub loaded_from_disk: u64,
    /// Launches served from memory.
    pub memory_hits: u64,
}

type Loading<T> = Arc<OnceCell<Result<Arc<Prepared<T>>, ModuleError>>>;

/// The cache. Generic over the store data so it can hold pre-instantiated modules.
pub(crate) struct ModuleCache<T: 'static> {
    engine: Engine,
    linkers: Linkers<T>,
    compiled_dir: PathBuf,
    raw_dir: PathBuf,
    max_module_size: u64,
    memory: Mutex<LruCache<Digest, Arc<Prepared<T>>>>,
    /// Digests whose compiled code is in `compiled_dir`.
    on_disk: Mutex<BTreeSet<Digest>>,
    loading: Mutex<HashMap<Digest, Loading<T>>>,
    /// Compiles at once, in all and per framework.
    slots: CompileSlots,
    /// Where launches found their module, and compile times.
    metrics: Arc<AgentMetrics>,
    /// Compiles in a child process held to a budget; `None` compiles in the agent.
    worker: Option<BoundWorker>,
}

/// A compile worker bound to the cache's engine.
#[derive(Debug)]
pub(crate) struct BoundWorker {
    pub(crate) worker: CompileWorker,
    /// The engine's compatibility: code the worker compiles must load in it.
    pub(crate) compatibility: String,
    pub(crate) max_wasm_stack: usize,
}

/// A module compiled, and its serialized code (to keep on disk).
type CompiledCode = (Compiled, wasmtime::Result<Vec<u8>>);

impl BoundWorker {
    /// `bytes` (of `kind`) compiled in the worker and loaded into `engine`; `None` when the
    /// worker cannot compile for this engine, and the agent compiles the module itself.
    fn compile(
        &self,
        digest: &Digest,
        kind: WasmBinary,
        bytes: &[u8],
        engine: &Engine,
    ) -> Result<Option<CompiledCode>, ModuleError> {
        let code = match self
            .worker
            .compile(bytes, &self.compatibility, self.max_wasm_stack)
        {
            Ok(code) => code,
            Err(WorkerError::Refused(reason)) => {
                return Err(ModuleError::Invalid {
                    digest: *digest,
                    reason,
                });
            }
            Err(WorkerError::Unavailable(reason)) => {
                tracing::warn!(%digest, %reason, "the compile worker cannot compile: compiling in the agent, without a budget");
                return Ok(None);
            }
        };
        // SAFETY: the code is what the agent's own compiler program made, with an engine of
        // this engine's compatibility (which the worker checked, and wasmtime checks again
        // on load), as for the compiled code kept on disk.
        #[allow(unsafe_code)]
        let loaded = match kind {
            WasmBinary::Module => {
                unsafe { Module::deserialize(engine, &code) }.map(Compiled::Module)
            }
            WasmBinary::Component => {
                unsafe { Component::deserialize(engine, &code) }.map(Compiled::Component)
            }
        };
        match loaded {
            Ok(compiled) => Ok(Some((compiled, Ok(code)))),
            Err(error) => {
                tracing::warn!(%digest, %error, "the compile worker's code does not load: compiling in the agent");
                Ok(None)
            }
        }
    }
}

impl<T: Send + 'static> ModuleCache<T> {
    pub(crate) fn new(
        engine: Engine,
        linkers: Linkers<T>,
        dir: &Path,
        compatibility: &str,
        max_module_size: u64,
        capacity: NonZeroUsize,
        metrics: Arc<AgentMetrics>,
    ) -> io::Result<Self> {
        let compiled_dir = dir.join(compatibility);
        let raw_dir = dir.join("raw");
        fs::create_dir_all(&compiled_dir)?;
        fs::create_dir_all(&raw_dir)?;
        let on_disk = compiled_on_disk(&compiled_dir)?;
        Ok(Self {
            engine,
            linkers,
            compiled_dir,
            raw_dir,
            max_module_size,
            memory: Mutex::new(LruCache::new(capacity)),
            on_disk: Mutex::new(on_disk),
            loading: Mutex::new(HashMap::new()),
            slots: CompileSlots::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
            metrics,
            worker: None,
        })
    }

    /// Compiles in `worker` from now on.
    pub(crate) fn with_compile_worker(mut self, worker: BoundWorker) -> Self {
        self.worker = Some(worker);
        self
    }

    fn counted(&self, result: &CacheResult) -> u64 {
        self.metrics.cache.get_or_create(result).get()
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.counted(&MISS),
            loaded_from_disk: self.counted(&DISK_HIT),
            memory_hits: self.counted(&MEMORY_HIT),
        }
    }

    /// Whether compiled code for `digest` is present (in memory or on disk). Reads no file.
    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        let in_memory = self
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(digest);
        in_memory || self.on_disk().contains(digest)
    }

    /// The digests of every module compiled for this engine (in memory or on disk), in
    /// order. Reads no file.
    pub(crate) fn digests(&self) -> Vec<Digest> {
        let mut digests = self.on_disk().clone();
        digests.extend(
            self.memory
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(digest, _)| *digest),
        );
        digests.into_iter().collect()
    }

    fn on_disk(&self) -> std::sync::MutexGuard<'_, BTreeSet<Digest>> {
        self.on_disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits raw module bytes: size cap, then the digest, then a load (compiling if needed).
    pub(crate) async fn admit(
        self: &Arc<Self>,
        bytes: Arc<[u8]>,
        owner: Owner,
    ) -> Result<(Digest, Arc<Prepared<T>>), ModuleError> {
        self.check_size(bytes.len() as u64)?;
        let digest = Digest::of(&bytes);
        let prepared = self.load(digest, Some(bytes), owner).await?;
        Ok((digest, prepared))
    }

    /// A module by digest, from memory, compiled code on disk, or raw bytes on disk.
    pub(crate) async fn get(
        self: &Arc<Self>,
        digest: Digest,
        owner: Owner,
    ) -> Result<Arc<Prepared<T>>, ModuleError> {
        self.load(digest, None, owner).await
    }

    /// `owner` asked for it: a compile takes one of its slots.
    async fn load(
        self: &Arc<Self>,
        digest: Digest,
        bytes: Option<Arc<[u8]>>,
        owner: Owner,
    ) -> Result<Arc<Prepared<T>>, ModuleError> {
        if let Some(hit) = self
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&digest)
        {
            self.metrics.cache.get_or_create(&MEMORY_HIT).inc();
            return Ok(hit.clone());
        }
        // One loader per digest: everyone else waits on the same cell.
        let cell = self
            .loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(digest)
            .or_default()
            .clone();
        let result = cell
            .get_or_init(|| {
                let cache = Arc::clone(self);
                async move {
                    // Compiling takes tens of milliseconds of CPU: keep it off async threads.
                    tokio::task::spawn_blocking(move || cache.load_blocking(digest, bytes, &owner))
                        .await
                        .unwrap_or_else(|e| {
                            Err(ModuleError::Io {
                                reason: format!("module loader failed: {e}"),
                            })
                        })
                }
            })
            .await
            .clone();
        if let Ok(prepared) = &result {
            self.memory
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(digest, prepared.clone());
        }
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if loading.get(&digest).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            loading.remove(&digest);
        }
        result
    }

    fn load_blocking(
        &self,
        digest: Digest,
        bytes: Option<Arc<[u8]>>,
        owner: &Owner,
    ) -> Result<Arc<Prepared<T>>, ModuleError> {
        let (compiled, uses_sdk) = match self.load_compiled(&digest) {
            // Compiled code keeps no custom sections: the raw bytes say whether it uses the
            // SDK (read once per load into memory).
            Some(compiled) => {
                let uses_sdk = self
                    .read_raw(&digest)
                    .is_ok_and(|bytes| crate::sdk::uses_sdk(&bytes));
                (compiled, uses_sdk)
            }
            None => {
                let bytes = match bytes {
                    Some(bytes) => {
                        write_atomically(&self.raw_path(&digest), &bytes).map_err(io_error)?;
                        bytes
                    }
                    None => self.read_raw(&digest)?,
                };
                let compiled = self.compile(&digest, &bytes, owner)?;
                (compiled, crate::sdk::uses_sdk(&bytes))
            }
        };
        let link_error = |e: wasmtime::Error| format!("{e:#}");
        let prepared = match compiled {
            Compiled::Module(module) => Prepared {
                reaches_files: crate::guest::reaches_files(&module),
                uses_sdk,
                code: Code::Module {
                    pre: self
                        .linkers
                        .module
                        .instantiate_pre(&module)
                        .map_err(link_error),
                    module,
                },
            },
            Compiled::Component(component) => Prepared {
                reaches_files: crate::guest::component_reaches_files(&component, &self.engine),
                uses_sdk,
                code: Code::Component {
                    pre: self
                        .linkers
                        .component
                        .instantiate_pre(&component)
                        .map_err(link_error),
                },
            },
        };
        Ok(Arc::new(prepared))
    }

    fn load_compiled(&self, digest: &Digest) -> Option<Compiled> {
        let path = self.compiled_path(digest);
        if !path.is_file() {
            // Removed behind the cache's back: stop announcing it.
            self.on_disk().remove(digest);
            return None;
        }
        // SAFETY: files under `compiled_dir` are written only by `compile` below, from code this
        // engine produced, and appear atomically (rename), so a partial write is never read.
        // wasmtime additionally checks the header and the engine compatibility on load.
        #[allow(unsafe_code)]
        let loaded = match Engine::detect_precompiled_file(&path) {
            Ok(Some(Precompiled::Component)) => unsafe {
                Component::deserialize_file(&self.engine, &path).map(Compiled::Component)
            },
            Ok(_) => unsafe { Module::deserialize_file(&self.engine, &path).map(Compiled::Module) },
            Err(error) => Err(error),
        };
        match loaded {
            Ok(compiled) => {
                self.metrics.cache.get_or_create(&DISK_HIT).inc();
                Some(compiled)
            }
            Err(error) => {
                tracing::warn!(%digest, %error, "discarding unloadable compiled module");
                self.on_disk().remove(digest);
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    fn read_raw(&self, digest: &Digest) -> Result<Arc<[u8]>, ModuleError> {
        let path = self.raw_path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ModuleError::NotFound { digest: *digest });
            }
            Err(e) => return Err(io_error(e)),
        };
        if Digest::of(&bytes) != *digest {
            tracing::warn!(%digest, "discarding corrupt raw module");
            let _ = fs::remove_file(&path);
            return Err(ModuleError::NotFound { digest: *digest });
        }
        self.check_size(bytes.len() as u64)?;
        Ok(bytes.into())
    }

    fn compile(
        &self,
        digest: &Digest,
        bytes: &[u8],
        owner: &Owner,
    ) -> Result<Compiled, ModuleError> {
        let invalid = |e: wasmtime::Error| ModuleError::Invalid {
            digest: *digest,
            reason: format!("{e:#}"),
        };
        // Admission first: a compile bomb is refused before it costs a compile.
        crate::admission::admit(bytes).map_err(|reason| ModuleError::Invalid {
            digest: *digest,
            reason: format!("over the agent's admission limits: {reason}"),
        })?;
        let _slot = self.slots.acquire(owner);
        let started = std::time::Instant::now();
        let Some(kind) = WasmBinary::detect(bytes) else {
            return Err(ModuleError::Invalid {
                digest: *digest,
                reason: "not a WebAssembly module or component (no `\\0asm` header)".into(),
            });
        };
        let in_worker = match &self.worker {
            Some(worker) => worker.compile(digest, kind, bytes, &self.engine)?,
            None => None,
        };
        // Validation is part of compilation for both kinds.
        let (compiled, code) = match (in_worker, kind) {
            (Some(compiled), _) => compiled,
            (None, WasmBinary::Module) => {
                let module = Module::from_binary(&self.engine, bytes).map_err(invalid)?;
                let code = module.serialize();
                (Compiled::Module(module), code)
            }
            (None, WasmBinary::Component) => {
                let component = Component::from_binary(&self.engine, bytes).map_err(invalid)?;
                let code = component.serialize();
                (Compiled::Component(component), code)
            }
        };
        self.metrics.cache.get_or_create(&MISS).inc();
        self.metrics
            .compile_seconds
            .observe(started.elapsed().as_secs_f64());
        match code {
            Ok(code) => match write_atomically(&self.compiled_path(digest), &code) {
                Ok(()) => {
                    self.on_disk().insert(*digest);
                }
                Err(error) => tracing::warn!(%digest, %error, "cannot persist compiled module"),
            },
            Err(error) => tracing::warn!(%digest, %error, "cannot serialize compiled module"),
        }
        Ok(compiled)
    }

    fn check_size(&self, size: u64) -> Result<(), ModuleError> {
        if size > self.max_module_size {
            return Err(ModuleError::TooLarge {
                size,
                limit: self.max_module_size,
            });
        }
        Ok(())
    }

    fn compiled_path(&self, digest: &Digest) -> PathBuf {
        self.compiled_dir.join(format!("{}.cwasm", digest.hex()))
    }

    fn raw_path(&self, digest: &Digest) -> PathBuf {
        self.raw_dir.join(format!("{}.wasm", digest.hex()))
    }
}

/// The digests named by the compiled code files (`<hex>.cwasm`) in `dir`; anything else
/// (an interrupted write's temporary file, say) is not compiled code.
fn compiled_on_disk(dir: &Path) -> io::Result<BTreeSet<Digest>> {
    let mut digests = BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let digest = name
            .to_str()
            .and_then(|name| name.strip_suffix(".cwasm"))
            .and_then(|hex| format!("{}{hex}", Digest::PREFIX).parse().ok());
        if let Some(digest) = digest {
            digests.insert(digest);
        }
    }
    Ok(digests)
}

fn io_error(e: io::Error) -> ModuleError {
    ModuleError::Io {
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` so that readers see either nothing or the whole file.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if path.is_file() {
        return Ok(());
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    fs::rename(&tmp, path)
}
