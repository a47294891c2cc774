//! Whether this machine runs on battery, where the system says so (Linux: a power supply of type
//! "Battery" whose status is "Discharging", under /sys/class/power_supply). Auto-sync then checks
//! the remote at its idle cadence, as after a long idle time. Unknown (other systems, no battery,
//! unreadable files) counts as not on battery.

use std::path::Path;

/// Where Linux lists the power supplies.
pub const POWER_SUPPLY_DIR: &str = "/sys/class/power_supply";

#[cfg(test)]
thread_local! {
    /// What [`on_battery`] answers in tests (on their own thread): never the test machine's own
    /// power supply.
    pub(crate) static ON_BATTERY_OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(Some(false)) };
}

/// Whether this machine runs on battery now.
pub fn on_battery() -> bool {
    #[cfg(test)]
    if let Some(b) = ON_BATTERY_OVERRIDE.with(|c| c.get()) {
        return b;
    }
    cfg!(target_os = "linux") && on_battery_in(Path::new(POWER_SUPPLY_DIR))
}

/// Whether a power-supply folder laid out like /sys/class/power_supply lists a discharging battery
/// of this machine.
pub fn on_battery_in(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let read = |p: &Path, name: &str| std::fs::read_to_string(p.join(name)).map(|s| s.trim().to_string()).unwrap_or_default();
    entries.flatten().any(|e| {
        let p = e.path();
        // A peripheral's battery (a wireless mouse) has scope "Device": not this machine's power.
        read(&p, "type") == "Battery" && read(&p, "status") == "Discharging" && read(&p, "scope") != "Device"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(dir: &Path, name: &str, kind: &str, status: Option<&str>) {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("type"), format!("{kind}\n")).unwrap();
        if let Some(s) = status {
            std::fs::write(p.join("status"), format!("{s}\n")).unwrap();
        }
    }

    #[test]
    fn a_discharging_battery_is_on_battery() {
        let t = tempfile::tempdir().unwrap();
        supply(t.path(), "AC", "Mains", None);
        supply(t.path(), "BAT0", "Battery", Some("Discharging"));
        assert!(on_battery_in(t.path()));
    }

    #[test]
    fn charging_full_or_no_battery_is_not() {
        for status in ["Charging", "Full", "Not charging", "Unknown"] {
            let t = tempfile::tempdir().unwrap();
            supply(t.path(), "AC", "Mains", None);
            supply(t.path(), "BAT0", "Battery", Some(status));
            assert!(!on_battery_in(t.path()), "{status}");
        }
        let t = tempfile::tempdir().unwrap();
        supply(t.path(), "AC", "Mains", None);
        assert!(!on_battery_in(t.path()), "no battery");
        // A wireless mouse's battery: discharging, but not this machine's.
        supply(t.path(), "hidpp_battery_0", "Battery", Some("Discharging"));
        std::fs::write(t.path().join("hidpp_battery_0/scope"), "Device\n").unwrap();
        assert!(!on_battery_in(t.path()), "a peripheral's battery");
        assert!(!on_battery_in(&t.path().join("missing")));
        let t = tempfile::tempdir().unwrap();
        supply(t.path(), "BAT1", "Battery", None);
        assert!(!on_battery_in(t.path()), "no status file");
    }
}
