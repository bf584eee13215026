//! Turning usage into a bill (`edge usage --cost`), the way FaaS providers price functions: a
//! price per request, per GB-s of memory over time, per CPU-second, per GB sent, and per
//! inference, with an optional free allowance per month deducted from the node's total. The
//! example sheet is `edge-config/prices.toml`.

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::usage::{UsageCounters, UsageView};

/// A price sheet. Unknown keys are an error so a typo never prices at zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSheet {
    /// Shown next to amounts; no conversion is made.
    pub currency: String,
    pub per_million_invocations: f64,
    pub per_gb_second: f64,
    #[serde(default)]
    pub per_cpu_second: f64,
    /// Per GB (10^9 bytes) of response bytes out.
    #[serde(default)]
    pub per_gb_out: f64,
    #[serde(default)]
    pub per_thousand_inferences: f64,
    /// Invocations not charged (deducted from the total over every app, as providers do).
    #[serde(default)]
    pub free_invocations: u64,
    /// GB-s not charged (deducted from the total over every app).
    #[serde(default)]
    pub free_gb_seconds: f64,
}

/// One app's charges.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Charge {
    pub app: String,
    pub invocations: f64,
    pub memory: f64,
    pub cpu: f64,
    pub transfer: f64,
    pub inferences: f64,
    pub total: f64,
}

/// A bill: per app, the free allowance, and the total.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bill {
    pub currency: String,
    pub apps: Vec<Charge>,
    /// The value of the free allowance used (subtracted from the sum of the apps' totals).
    pub free_allowance: f64,
    pub total: f64,
}

impl PriceSheet {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read price sheet {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid price sheet {}", path.display()))
    }

    fn charge(&self, app: &str, usage: &UsageCounters) -> Charge {
        let invocations = usage.invocations as f64 / 1e6 * self.per_million_invocations;
        let memory = usage.gb_seconds * self.per_gb_second;
        let cpu = usage.cpu_seconds * self.per_cpu_second;
        let transfer = usage.bytes_out as f64 / 1e9 * self.per_gb_out;
        let inferences = usage.inferences as f64 / 1e3 * self.per_thousand_inferences;
        Charge {
            app: app.to_string(),
            invocations,
            memory,
            cpu,
            transfer,
            inferences,
            total: invocations + memory + cpu + transfer + inferences,
        }
    }

    /// Prices `usage`; the free allowance comes off the sum.
    pub fn bill(&self, usage: &[UsageView]) -> Bill {
        let apps: Vec<Charge> = usage
            .iter()
            .map(|u| self.charge(&u.app, &u.usage))
            .collect();
        let invocations: u64 = usage.iter().map(|u| u.usage.invocations).sum();
        let gb_seconds: f64 = usage.iter().map(|u| u.usage.gb_seconds).sum();
        let free_allowance = invocations.min(self.free_invocations) as f64 / 1e6
            * self.per_million_invocations
            + gb_seconds.min(self.free_gb_seconds) * self.per_gb_second;
        let gross: f64 = apps.iter().map(|c| c.total).sum();
        Bill {
            currency: self.currency.clone(),
            apps,
            free_allowance,
            total: (gross - free_allowance).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_sheet_loads_and_prices_like_a_faas_provider() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge-config/prices.toml");
        let sheet = PriceSheet::load(&path).unwrap();
        let usage = vec![UsageView {
            app: "hello".into(),
            usage: UsageCounters {
                invocations: 2_000_000,
                gb_seconds: 1000.0,
                bytes_out: 2_000_000_000,
                ..UsageCounters::default()
            },
        }];
        let bill = sheet.bill(&usage);
        let charge = &bill.apps[0];
        assert!((charge.invocations - 2.0 * sheet.per_million_invocations).abs() < 1e-9);
        assert!((charge.memory - 1000.0 * sheet.per_gb_second).abs() < 1e-9);
        assert!((charge.transfer - 2.0 * sheet.per_gb_out).abs() < 1e-9);
        assert!(bill.total <= charge.total && bill.total >= 0.0);
    }

    #[test]
    fn free_allowance_comes_off_the_total_and_never_below_zero() {
        let sheet = PriceSheet {
            currency: "USD".into(),
            per_million_invocations: 1.0,
            per_gb_second: 0.0,
            per_cpu_second: 0.0,
            per_gb_out: 0.0,
            per_thousand_inferences: 0.0,
            free_invocations: 1_000_000,
            free_gb_seconds: 0.0,
        };
        let usage = |n| {
            vec![UsageView {
                app: "a".into(),
                usage: UsageCounters {
                    invocations: n,
                    ..UsageCounters::default()
                },
            }]
        };
        assert!((sheet.bill(&usage(3_000_000)).total - 2.0).abs() < 1e-9);
        assert_eq!(sheet.bill(&usage(10)).total, 0.0);
        let err = toml::from_str::<PriceSheet>(
            "currency = \"USD\"\nper_million_invocations = 1\nper_gb_second = 0\ntypo = 1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("typo"), "{err}");
    }
}
