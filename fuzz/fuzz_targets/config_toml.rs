//! The configuration file: any text parses to a configuration or a clear error, and a parsed
//! one validates or names its field, without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) =
            meeting_agent::config::Config::from_toml_str(text, std::path::Path::new("fuzz.toml"))
    {
        let _ = config.validate();
        let _ = meeting_agent::features::check_config(&config);
    }
});
