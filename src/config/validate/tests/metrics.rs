//! `[metrics]`: defaults, values, and mistakes named by key and line.

use super::*;

#[test]
fn metrics_defaults_to_on_with_an_hour() {
    let cfg = ok(MINIMAL);
    assert!(cfg.metrics.enabled);
    assert!(cfg.metrics.prometheus);
    assert_eq!(cfg.metrics.latency_window_s, 3600);
    // The spec's commented-out section, uncommented, is accepted as written.
    let spec = "[metrics]\nprometheus = true\nlatency_window_s = 3600\n";
    assert_eq!(ok(&format!("{spec}{MINIMAL}")).metrics, cfg.metrics);
}

#[test]
fn metrics_values_are_read() {
    let text = format!(
        "[metrics]\nprometheus = false\nlatency_window_s = 900\nenabled = false\n{MINIMAL}"
    );
    let m = ok(&text).metrics;
    assert!(!m.enabled && !m.prometheus);
    assert_eq!(m.latency_window_s, 900);
}

#[test]
fn metrics_window_outside_a_minute_to_an_hour_names_the_key_and_line() {
    let e = bad(
        "[metrics]\nprometheus = true\nlatency_window_s = 30\n",
        3,
        &["metrics.latency_window_s = 30", "at least 60", "1m"],
    );
    assert!(matches!(e, ConfigError::TooSmall { .. }));
    let e = bad(
        "[metrics]\nlatency_window_s = 86400\n",
        2,
        &["metrics.latency_window_s = 86400", "at most 3600", "1h"],
    );
    assert!(matches!(e, ConfigError::TooLarge { .. }));
    bad(
        "[metrics]\nprometeus = true\n",
        2,
        &["metrics", "`prometeus`"],
    );
}
