//! `primes [n]`: prints how many primes are `<= n` (default 100000), using a sieve of
//! Eratosthenes. A CPU- and memory-bound workload of predictable size. Bad argument: exit 2.

use std::process::ExitCode;

fn main() -> ExitCode {
    let n = match std::env::args().nth(1) {
        None => 100_000,
        Some(arg) => match arg.parse::<usize>() {
            Ok(n) => n,
            Err(err) => {
                eprintln!("primes: invalid limit {arg:?}: {err}");
                return ExitCode::from(2);
            }
        },
    };
    println!("{}", count_primes(n));
    ExitCode::SUCCESS
}

fn count_primes(n: usize) -> usize {
    if n < 2 {
        return 0;
    }
    let mut composite = vec![false; n + 1];
    let mut i = 2;
    while i * i <= n {
        if !composite[i] {
            let mut multiple = i * i;
            while multiple <= n {
                composite[multiple] = true;
                multiple += i;
            }
        }
        i += 1;
    }
    composite[2..].iter().filter(|&&c| !c).count()
}
