//! The benchmarks' clock, output and input: `performance.now()`, `process.stdout` and `node:fs`
//! in wasm under Node (not console.log, which wasm-bindgen-test captures), `Instant`, stdout and
//! `std::fs` natively.

#[cfg(target_arch = "wasm32")]
mod imp {
    use wasm_bindgen::prelude::wasm_bindgen;
    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        fn performance_now() -> f64;
        // Not console.log, which wasm-bindgen-test captures.
        #[wasm_bindgen(js_namespace = ["process", "stdout"], js_name = write)]
        fn stdout_write(s: &str);
    }
    #[wasm_bindgen(inline_js = "export function env_file(name) {
        const path = process.env[name];
        if (!path) return undefined;
        try { return process.getBuiltinModule('node:fs').readFileSync(path, 'utf8'); }
        catch { return undefined; }
    }")]
    extern "C" {
        fn env_file(name: &str) -> Option<String>;
    }
    pub fn now_ms() -> f64 {
        performance_now()
    }
    /// The text of the file that the environment variable `name` names, if it is set and readable.
    #[allow(dead_code)] // not every benchmark reads input
    pub fn read_env_file(name: &str) -> Option<String> {
        env_file(name)
    }
    pub fn print(s: &str) {
        stdout_write(&format!("{s}\n"));
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    pub fn now_ms() -> f64 {
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
    }
    pub fn print(s: &str) {
        println!("{s}");
    }
    /// The text of the file that the environment variable `name` names, if it is set and readable.
    #[allow(dead_code)] // not every benchmark reads input
    pub fn read_env_file(name: &str) -> Option<String> {
        std::fs::read_to_string(std::env::var_os(name)?).ok()
    }
}

#[allow(unused_imports)] // not every benchmark reads input
pub use imp::read_env_file;
pub use imp::{now_ms, print};
