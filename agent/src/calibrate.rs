//! Measures how much fuel one CPU-second of guest execution consumes on this host.
//!
//! The figure turns a wall-clock yield period into a fuel yield interval, so that every guest
//! yields often enough for kills, timeouts and CPU throttling to land promptly, whatever the
//! host's speed.

use std::time::Duration;

use wasmtime::{Engine, Instance, Module, Store};

use crate::cpu::thread_cpu_time;

/// A tight loop of cheap instructions: a lower bound on how fast fuel burns.
const SPIN: &str = r#"
(module
  (func (export "spin") (local i32)
    (loop
      (local.set 0 (i32.add (local.get 0) (i32.const 1)))
      (br 0))))
"#;

/// Fuel burned per calibration round; a few milliseconds of CPU on current hardware.
const ROUND_FUEL: u64 = 10_000_000;

/// Runs the spin loop until its fuel runs out a few times and keeps the fastest round.
pub(crate) fn fuel_per_cpu_second(engine: &Engine) -> wasmtime::Result<u64> {
    let module = Module::new(engine, wat::parse_str(SPIN)?)?;
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let mut store = Store::new(engine, ());
        store.set_fuel(ROUND_FUEL)?;
        let instance = Instance::new(&mut store, &module, &[])?;
        let spin = instance.get_typed_func::<(), ()>(&mut store, "spin")?;
        let before = thread_cpu_time();
        let ran_out = spin.call(&mut store, ()).is_err();
        let used = thread_cpu_time().saturating_sub(before);
        if !ran_out {
            return Err(wasmtime::format_err!("calibration loop returned"));
        }
        best = best.min(used);
    }
    let nanos = best.as_nanos().max(1);
    Ok((u128::from(ROUND_FUEL) * 1_000_000_000 / nanos).min(u128::from(u64::MAX)) as u64)
}
