//! The benchmarks' clock and output: `performance.now()` and `process.stdout` in wasm under Node
//! (not console.log, which wasm-bindgen-test captures), `Instant` and stdout natively.

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
    pub fn now_ms() -> f64 {
        performance_now()
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
}

pub use imp::{now_ms, print};
