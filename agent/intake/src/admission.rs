//! What a module may hold before the agent spends a compile on it. One pass over its bytes,
//! without compiling, refuses a module built to make the compiler work for minutes (hundreds
//! of thousands of functions, a function of megabytes, blocks nested thousands deep) in
//! milliseconds, with the limit it passed. Components are read through to their core modules.
//! Whether the module is valid is left to the compiler, which validates as it compiles.

use wasmparser::{Operator, Parser, Payload};

/// Most functions a module (or all core modules of a component) may define.
pub const MAX_FUNCTIONS: usize = 100_000;

/// Largest function body, in bytes. Compile time grows faster than a function's size; real
/// code stays far below (a big switch in an interpreter loop is tens of kilobytes).
pub const MAX_FUNCTION_BYTES: usize = 1 << 20;

/// Deepest nesting of blocks, loops and ifs in a function. Compilers lower a `switch` to one
/// block per case, so this leaves room for switches of thousands of cases.
pub const MAX_NESTING: usize = 10_000;

/// Checks `bytes` against the limits above; the error says which was passed. Bytes that do
/// not parse far enough to tell are let through for the compiler to refuse, with its reason.
pub fn admit(bytes: &[u8]) -> Result<(), String> {
    let mut functions = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(Payload::CodeSectionEntry(body)) = payload else {
            if payload.is_err() {
                return Ok(());
            }
            continue;
        };
        functions += 1;
        if functions > MAX_FUNCTIONS {
            return Err(format!("more than {MAX_FUNCTIONS} functions"));
        }
        let size = body.range().len();
        if size > MAX_FUNCTION_BYTES {
            return Err(format!(
                "function {} is {size} bytes, over the {MAX_FUNCTION_BYTES}-byte limit",
                functions - 1
            ));
        }
        let Ok(mut operators) = body.get_operators_reader() else {
            return Ok(());
        };
        let mut depth = 0usize;
        while !operators.eof() {
            match operators.read() {
                Ok(
                    Operator::Block { .. }
                    | Operator::Loop { .. }
                    | Operator::If { .. }
                    | Operator::TryTable { .. }
                    | Operator::Try { .. },
                ) => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(format!(
                            "function {} nests blocks more than {MAX_NESTING} deep",
                            functions - 1
                        ));
                    }
                }
                Ok(Operator::End) => depth = depth.saturating_sub(1),
                Ok(_) => {}
                Err(_) => return Ok(()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(funcs: &str) -> Vec<u8> {
        wat::parse_str(format!("(module {funcs})")).unwrap()
    }

    fn nested(depth: usize) -> Vec<u8> {
        module(&format!(
            "(func {}{})",
            "(block ".repeat(depth),
            ")".repeat(depth)
        ))
    }

    #[test]
    fn modules_within_the_limits_are_admitted() {
        admit(&module("(func) (func (result i32) i32.const 1)")).unwrap();
        admit(&nested(MAX_NESTING)).unwrap();
        admit(&module(&"(func)".repeat(MAX_FUNCTIONS))).unwrap();
        // Every program the project ships, core modules and components alike.
        for (name, path) in corral_wasm_tasks::ALL {
            let bytes = std::fs::read(path).unwrap();
            assert_eq!(admit(&bytes), Ok(()), "{name}");
        }
    }

    #[test]
    fn too_many_functions_are_refused() {
        let err = admit(&module(&"(func)".repeat(MAX_FUNCTIONS + 1))).unwrap_err();
        assert_eq!(err, "more than 100000 functions");
    }

    #[test]
    fn too_deep_nesting_is_refused() {
        let err = admit(&nested(MAX_NESTING + 1)).unwrap_err();
        assert_eq!(err, "function 0 nests blocks more than 10000 deep");
    }

    #[test]
    fn too_large_a_function_is_refused() {
        // `i32.const 0` and `drop`: 3 bytes a pair.
        let body = "i32.const 0 drop ".repeat(MAX_FUNCTION_BYTES / 3 + 1);
        let err = admit(&module(&format!("(func) (func {body})"))).unwrap_err();
        assert!(
            err.starts_with("function 1 is ") && err.ends_with("over the 1048576-byte limit"),
            "{err}"
        );
    }

    #[test]
    fn what_does_not_parse_is_left_to_the_compiler() {
        admit(b"\0asm\x01\0\0\0\x0a\xff").unwrap();
        admit(b"not wasm").unwrap();
    }
}
