//! What a run calls, as `wasmtime run` decides it: a command's `_start` or `wasi:cli/run`, or
//! the function `--invoke` names. A core module's function takes its parameters from the
//! task's arguments; a component's is named by a call written in WAVE (`add(1, 2)`), which
//! carries them.

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::wasm_wave::untyped::UntypedFuncCall;
use wasmtime::component::{Component, ComponentExportIndex};
use wasmtime::{Engine, Store, Val, ValType};

use crate::cache::{Code, Prepared};
use crate::executor::Stage;
use crate::guest::{OutputLimitExceeded, TaskState};
use crate::output::RunOutput;
use crate::task::StartError;

/// The entrypoint of a WASI command, the default of every task.
pub(crate) const COMMAND_ENTRYPOINT: &str = "_start";

/// What a run calls.
pub(crate) enum Call {
    /// A core module's export: `None` for a function taking and returning nothing (a
    /// command's `_start`), else its parameters.
    Module(Option<Vec<Val>>),
    /// A command component's `wasi:cli/run`.
    Run,
    /// A component's exported function, with its parameters.
    Component {
        func: ComponentExportIndex,
        params: Vec<wasmtime::component::Val>,
    },
}

/// The call a run of `prepared` makes for the entrypoint `name` and the task's `args`.
pub(crate) fn call(
    prepared: &Prepared<TaskState>,
    engine: &Engine,
    name: &str,
    args: &[String],
) -> Result<Call, StartError> {
    match &prepared.code {
        Code::Module { module, .. } => {
            let Some(wasmtime::ExternType::Func(ty)) = module.get_export(name) else {
                return Err(StartError::MissingEntrypoint { name: name.into() });
            };
            if ty.params().len() == 0 && ty.results().len() == 0 {
                return Ok(Call::Module(None));
            }
            module_params(name, &ty, args).map(|params| Call::Module(Some(params)))
        }
        // A command component's entrypoint is its `wasi:cli/run` export.
        Code::Component { .. } if name == COMMAND_ENTRYPOINT => Ok(Call::Run),
        Code::Component { pre: Ok(pre) } => component_call(pre.component(), engine, name),
        // Linking failed: the run reports that.
        Code::Component { pre: Err(_) } => Ok(Call::Run),
    }
}

fn invalid(reason: String) -> StartError {
    StartError::InvalidSpec { reason }
}

/// The parameters of a call to `name` (of type `ty`) parsed from `args`; refused when `args`
/// are too few or do not parse, or when `ty` takes or returns other than numbers.
fn module_params(
    name: &str,
    ty: &wasmtime::FuncType,
    args: &[String],
) -> Result<Vec<Val>, StartError> {
    let numeric =
        |t: &ValType| matches!(t, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64);
    if let Some(other) = ty.params().chain(ty.results()).find(|t| !numeric(t)) {
        return Err(invalid(format!(
            "`{name}` takes or returns a {other}: an entrypoint takes and returns numbers \
             only (i32, i64, f32, f64)"
        )));
    }
    if args.len() < ty.params().len() {
        let types: Vec<String> = ty.params().map(|t| t.to_string()).collect();
        return Err(invalid(format!(
            "`{name}` takes {} arguments ({}); the task has {}",
            types.len(),
            types.join(", "),
            args.len()
        )));
    }
    ty.params()
        .zip(args)
        .enumerate()
        .map(|(i, (t, arg))| {
            let value = match t {
                ValType::I32 => arg.parse().ok().map(Val::I32),
                ValType::I64 => arg.parse().ok().map(Val::I64),
                ValType::F32 => arg.parse::<f32>().ok().map(|f| Val::F32(f.to_bits())),
                ValType::F64 => arg.parse::<f64>().ok().map(|f| Val::F64(f.to_bits())),
                _ => None,
            };
            value.ok_or_else(|| {
                invalid(format!(
                    "argument {} of `{name}`: {arg:?} is not an {t}",
                    i + 1
                ))
            })
        })
        .collect()
}

/// The component function a WAVE call `source` names (exported by the component, or by an
/// instance it exports), with its parameters typed.
fn component_call(
    component: &Component,
    engine: &Engine,
    source: &str,
) -> Result<Call, StartError> {
    // A bare name calls a function that takes nothing.
    let bare;
    let source = if source.contains('(') {
        source
    } else {
        bare = format!("{source}()");
        &bare
    };
    let call = UntypedFuncCall::parse(source).map_err(|e| {
        invalid(format!(
            "entrypoint {source:?} is not a function call in WAVE, such as `add(1, 2)`: {e}"
        ))
    })?;
    let name = call.name();
    let ty = component.component_type();
    // (the exporting instance, if any; the function's type)
    let mut found: Vec<(Option<&str>, ComponentFunc)> = Vec::new();
    for (export, item) in ty.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) if export == name => found.push((None, func)),
            ComponentItem::ComponentInstance(instance) => {
                for (inner, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty
                        && inner == name
                    {
                        found.push((Some(export), func));
                    }
                }
            }
            _ => {}
        }
    }
    let (instance, func_ty) = match found.len() {
        0 => return Err(StartError::MissingEntrypoint { name: name.into() }),
        1 => found.remove(0),
        _ => {
            let places: Vec<&str> = found
                .iter()
                .map(|(i, _)| i.unwrap_or("the component"))
                .collect();
            return Err(invalid(format!(
                "`{name}` is exported by several instances ({}): cannot tell which to call",
                places.join(", ")
            )));
        }
    };
    let types: Vec<_> = func_ty.params().map(|(_, t)| t).collect();
    let params = call
        .to_wasm_params(types.iter())
        .map_err(|e| invalid(format!("the parameters of `{name}` in {source:?}: {e}")))?;
    let outer = instance.and_then(|i| component.get_export_index(None, i));
    let func = component
        .get_export_index(outer.as_ref(), name)
        .ok_or_else(|| StartError::MissingEntrypoint { name: name.into() })?;
    Ok(Call::Component { func, params })
}

/// Calls a module's entrypoint `name` with `params` (see [`Call::Module`]), writing what
/// it returns to stdout. A reactor's `_initialize` runs first, once, as the WASI application
/// ABI asks and `wasmtime run --invoke` does; a command (`_start`) initializes itself.
pub(crate) async fn call_module_func(
    store: &mut Store<TaskState>,
    instance: &wasmtime::Instance,
    name: &str,
    params: Option<Vec<Val>>,
    output: &RunOutput,
) -> Result<(), (Stage, wasmtime::Error)> {
    if name != COMMAND_ENTRYPOINT
        && let Ok(initialize) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize")
    {
        initialize
            .call_async(&mut *store, ())
            .await
            .map_err(|e| (Stage::Run, e))?;
    }
    let Some(params) = params else {
        let main = instance
            .get_typed_func::<(), ()>(&mut *store, name)
            .map_err(|e| (Stage::Instantiate, e))?;
        return main
            .call_async(&mut *store, ())
            .await
            .map_err(|e| (Stage::Run, e));
    };
    let func = instance.get_func(&mut *store, name).ok_or_else(|| {
        let missing = StartError::MissingEntrypoint { name: name.into() };
        (Stage::Instantiate, missing.into())
    })?;
    let mut results = vec![Val::I32(0); func.ty(&*store).results().len()];
    func.call_async(&mut *store, &params, &mut results)
        .await
        .map_err(|e| (Stage::Run, e))?;
    let lines: Vec<String> = results.iter().map(core_value_text).collect();
    output
        .write_results(&lines)
        .map_err(|_| (Stage::Run, OutputLimitExceeded.into()))
}

/// A number a core function returned, as `wasmtime run --invoke` prints it.
fn core_value_text(value: &Val) -> String {
    match value {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(bits) => f32::from_bits(*bits).to_string(),
        Val::F64(bits) => f64::from_bits(*bits).to_string(),
        // Refused before the call (see `call`).
        other => format!("{other:?}"),
    }
}

/// Calls a component's exported function `func` with `params`, writing what it returns to
/// stdout in WAVE, as `wasmtime run --invoke` prints it.
pub(crate) async fn call_component_func(
    store: &mut Store<TaskState>,
    instance: &wasmtime::component::Instance,
    func: wasmtime::component::ComponentExportIndex,
    params: &[wasmtime::component::Val],
    output: &RunOutput,
) -> Result<(), (Stage, wasmtime::Error)> {
    let func = instance.get_func(&mut *store, func).ok_or_else(|| {
        let missing = StartError::MissingEntrypoint {
            name: "the invoked function".into(),
        };
        (Stage::Instantiate, missing.into())
    })?;
    let mut results = vec![wasmtime::component::Val::Bool(false); func.ty(&*store).results().len()];
    func.call_async(&mut *store, params, &mut results)
        .await
        .map_err(|e| (Stage::Run, e))?;
    let lines = results
        .iter()
        .map(wasmtime::component::Val::to_wave)
        .collect::<Result<Vec<String>, _>>()
        .map_err(|e| (Stage::Run, e))?;
    output
        .write_results(&lines)
        .map_err(|_| (Stage::Run, OutputLimitExceeded.into()))
}
