//! The cost model (issue 7): scenarios whose expected figures are computed by hand, with the
//! arithmetic written out beside each expectation.

use sovereign::api::cluster::Pricing;
use sovereign::api::workload::Money;
use sovereign::cost::catalog::{Catalog, EgressRate};
use sovereign::cost::egress::GIB;
use sovereign::cost::{
    CostError, CostKind, Facts, Footprint, FxTable, LedgerInput, MoverRole, MoverUse, Observation,
    Side, VolumeUse, actual, allowance_use, check, check_estimate, cost_status, effective_pricing,
    egress_charge, estimate, parse_override, round_cents,
};
use sovereign::cost::{EstimateInput, PriceList};

const GIB_U: u64 = 1 << 30;

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected}, got {actual}"
    );
}

fn pricing(yaml: &str) -> Pricing {
    serde_yaml::from_str(yaml).expect("test pricing")
}

fn named(name: &str, provider: Option<&str>, declared: Option<&Pricing>) -> PriceList {
    Catalog::builtin().effective_pricing(name, provider, declared)
}

fn tiers() -> EgressRate {
    let p = pricing(
        "currency: USD\negressTiers: [{upToGiB: 1000, perGiB: 0.10}, {upToGiB: 5000, perGiB: 0.08}, {upToGiB: 10000, perGiB: 0.05}]\n",
    );
    EgressRate::Tiered(p.egress_tiers.unwrap_or_default())
}

#[test]
fn egress_across_tiers_with_a_free_allowance() {
    // 6,000 GiB, 100 GiB free a month, nothing sent earlier:
    //   free           0 –   100 GiB:   100 GiB × 0      =   0.00
    //   tier 1       100 – 1,000 GiB:   900 GiB × 0.10   =  90.00
    //   tier 2     1,000 – 5,000 GiB: 4,000 GiB × 0.08   = 320.00
    //   tier 3     5,000 – 6,000 GiB: 1,000 GiB × 0.05   =  50.00
    //                                              total = 460.00 USD
    let c = egress_charge(6000 * GIB_U, Some(&tiers()), 100.0, 0.0);
    close(c.gib, 6000.0);
    close(c.allowance.used_by_transfer_gib, 100.0);
    let got: Vec<(usize, f64, f64)> = c.tiers.iter().map(|t| (t.tier, t.gib, t.amount)).collect();
    assert_eq!(got.len(), 3);
    for ((tier, gib, amount), (et, eg, ea)) in
        got.iter()
            .zip([(1, 900.0, 90.0), (2, 4000.0, 320.0), (3, 1000.0, 50.0)])
    {
        assert_eq!(*tier, et);
        close(*gib, eg);
        close(*amount, ea);
    }
    close(c.amount, 460.0);
    close(c.unpriced_gib, 0.0);

    // The same transfer after 50 GiB were already sent this month: it occupies 50 – 6,050.
    //   free     50 – 100:     50 GiB × 0    =   0.00  (50 of the allowance used before)
    //   tier 1  100 – 1,000:  900 GiB × 0.10 =  90.00
    //   tier 2  1,000 – 5,000: 4,000 × 0.08  = 320.00
    //   tier 3  5,000 – 6,050: 1,050 × 0.05  =  52.50
    //                                  total = 462.50
    let c = egress_charge(6000 * GIB_U, Some(&tiers()), 100.0, 50.0);
    close(c.allowance.used_before_gib, 50.0);
    close(c.allowance.used_by_transfer_gib, 50.0);
    close(c.allowance.remaining_gib, 0.0);
    close(c.amount, 462.5);

    // The last tier applies beyond its bound: 20,000 GiB →
    //   90.00 + 320.00 + (20,000 − 5,000) × 0.05 = 90 + 320 + 750 = 1,160.00
    close(
        egress_charge(20000 * GIB_U, Some(&tiers()), 100.0, 0.0).amount,
        1160.0,
    );

    // Already 2,000 GiB sent: 1 GiB more is in tier 2 → 1 × 0.08 = 0.08, no allowance left.
    let c = egress_charge(GIB_U, Some(&tiers()), 100.0, 2000.0);
    assert_eq!(c.tiers.len(), 1);
    assert_eq!(c.tiers[0].tier, 2);
    close(c.amount, 0.08);

    // Flat price without tiers: (300 − 100) GiB × 0.09 = 18.00.
    close(
        egress_charge(300 * GIB_U, Some(&EgressRate::Flat(0.09)), 100.0, 0.0).amount,
        18.0,
    );

    // A transfer inside the allowance costs nothing and leaves the rest: 100 − 30 − 20 = 50 left.
    let a = allowance_use(100.0, 30.0, 20.0);
    close(a.used_before_gib, 30.0);
    close(a.used_by_transfer_gib, 20.0);
    close(a.remaining_gib, 50.0);

    // GiB are 2^30 bytes: 1.5 GiB = 1,610,612,736 bytes at 0.10 flat → 0.15.
    close(
        egress_charge(1_610_612_736, Some(&EgressRate::Flat(0.10)), 0.0, 0.0).amount,
        0.15,
    );
    assert_eq!(GIB, 1_073_741_824.0);
}

#[test]
fn aws_catalog_egress_in_cad_at_the_placeholder_rate() {
    // 1 TiB = 1,024 GiB out of AWS (catalog: 100 GiB free, then $0.09 up to 10,240 GiB):
    //   (1,024 − 100) × 0.09 = 924 × 0.09 = 83.16 USD; × 1.38 (placeholder) = 114.7608 CAD → 114.76
    let fx = FxTable::builtin();
    let src = named("aws-us-east-1", Some("aws"), None);
    let dst = named("ovh-bhs5", Some("ovhcloud"), None);
    let empty = Footprint::default();
    let mut input = EstimateInput::new(
        Side {
            cluster: "aws-us-east-1",
            prices: &src,
            footprint: &empty,
        },
        Side {
            cluster: "ovh-bhs5",
            prices: &dst,
            footprint: &empty,
        },
        1024 * GIB_U,
        &fx,
    );
    input.mover = MoverUse::default();
    let e = estimate(&input).expect("estimate");
    let tier = e
        .one_time
        .items
        .iter()
        .find(|i| i.name.starts_with("egress from aws-us-east-1: tier 1"))
        .expect("tier 1 line");
    close(tier.quantity, 924.0);
    close(tier.unit_price, 0.09 * 1.38);
    close(tier.amount, 114.7608);
    assert!(
        tier.source
            .starts_with("built-in catalog 2026-11-28: internet egress"),
        "{}",
        tier.source
    );
    assert!(
        tier.source
            .contains("1.38 USD→CAD (2026-11-28, placeholder)")
    );
    close(e.rounded().one_time.total, 114.76);
    assert!(e.assumptions.iter().any(|a| a.contains("placeholder")));
    // The free part is its own line, priced at 0 from a known source, not "unpriced".
    let free = e
        .one_time
        .items
        .iter()
        .find(|i| i.name.ends_with("free allowance"))
        .expect("free line");
    close(free.quantity, 100.0);
    assert!(!free.source.starts_with("unpriced"));
    assert!(e.is_complete(), "{:?}", e.unpriced);
}

/// Source on AWS: declared compute, catalog egress and LB; target a Québec provider priced in CAD
/// by contract, with no load-balancer price.
fn scenario_prices() -> (PriceList, PriceList) {
    let src = pricing(
        "currency: USD\nvcpuHour: 0.04\nmemoryGiBHour: 0.005\nstoragePerGiBMonth: {gp3: 0.08, io2: 0.125}\nsource: EA-2026-17\n",
    );
    let dst = pricing(
        "currency: CAD\nvcpuHour: 0.03\nmemoryGiBHour: 0.004\nstoragePerGiBMonth: {high-speed: 0.12, classic: 0.05}\n",
    );
    (
        named("aws-us-east-1", Some("aws"), Some(&src)),
        named("ovh-bhs5", Some("ovhcloud"), Some(&dst)),
    )
}

#[test]
fn mixed_storage_classes_monthly_before_and_after() {
    let fx = FxTable::builtin().with_overrides([parse_override("USD:CAD=1.25").expect("fx")]);
    let (src, dst) = scenario_prices();
    let before = Footprint {
        cpu_cores: 2.0,
        memory_gib: 8.0,
        volumes: vec![
            VolumeUse {
                storage_class: "gp3".into(),
                gib: 100.0,
            },
            VolumeUse {
                storage_class: "io2".into(),
                gib: 200.0,
            },
            VolumeUse {
                storage_class: "gp3".into(),
                gib: 50.0,
            },
        ],
        load_balancers: 1,
    };
    // storageClassMap: gp3 → high-speed, io2 → classic.
    let after = Footprint {
        volumes: vec![
            VolumeUse {
                storage_class: "high-speed".into(),
                gib: 150.0,
            },
            VolumeUse {
                storage_class: "classic".into(),
                gib: 200.0,
            },
        ],
        ..before.clone()
    };
    let mut input = EstimateInput::new(
        Side {
            cluster: "aws-us-east-1",
            prices: &src,
            footprint: &before,
        },
        Side {
            cluster: "ovh-bhs5",
            prices: &dst,
            footprint: &after,
        },
        0,
        &fx,
    );
    input.parallel_hours = 0.0;
    input.mover = MoverUse::default();
    let e = estimate(&input).expect("estimate");

    // Before (USD × 1.25 → CAD), 730 h a month:
    //   vCPU     2 × 730 = 1,460 vCPU-h × (0.04 × 1.25 = 0.05)       = 73.00
    //   memory   8 × 730 = 5,840 GiB-h  × (0.005 × 1.25 = 0.00625)   = 36.50
    //   gp3      100 + 50 = 150 GiB-mo  × (0.08 × 1.25 = 0.10)       = 15.00
    //   io2      200 GiB-mo             × (0.125 × 1.25 = 0.15625)   = 31.25
    //   LB       1 × 730 = 730 LB-h     × (0.0225 × 1.25 = 0.028125) = 20.53125 (catalog)
    //                                                          total = 176.28125 → 176.28
    let names: Vec<&str> = e
        .monthly_before
        .items
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "aws-us-east-1: vCPU",
            "aws-us-east-1: memory",
            "aws-us-east-1: storage gp3",
            "aws-us-east-1: storage io2",
            "aws-us-east-1: load balancers"
        ]
    );
    let amounts: Vec<f64> = e.monthly_before.items.iter().map(|i| i.amount).collect();
    for (a, x) in amounts.iter().zip([73.0, 36.5, 15.0, 31.25, 20.53125]) {
        close(*a, x);
    }
    close(e.monthly_before.items[2].quantity, 150.0);
    close(e.monthly_before.total, 176.28125);
    close(e.rounded().monthly_before.total, 176.28);
    assert!(e.monthly_before.items[0].source.starts_with(
        "SovereignCluster aws-us-east-1 spec.pricing (EA-2026-17); converted at 1.25 USD→CAD"
    ));
    assert!(
        e.monthly_before.items[4]
            .source
            .starts_with("built-in catalog 2026-11-28")
    );

    // After (CAD, no conversion):
    //   vCPU       1,460 × 0.03  = 43.80
    //   memory     5,840 × 0.004 = 23.36
    //   classic      200 × 0.05  = 10.00   (classes in name order: classic before high-speed)
    //   high-speed   150 × 0.12  = 18.00
    //   LB           730 × ?     = unpriced (OVH's LB price is unknown)
    //                      total = 95.16, incomplete
    let amounts: Vec<f64> = e.monthly_after.items.iter().map(|i| i.amount).collect();
    for (a, x) in amounts.iter().zip([43.8, 23.36, 10.0, 18.0, 0.0]) {
        close(*a, x);
    }
    close(e.monthly_after.total, 95.16);
    let lb = &e.monthly_after.items[4];
    assert_eq!(lb.name, "ovh-bhs5: load balancers");
    close(lb.quantity, 730.0);
    assert!(
        lb.source.starts_with("unpriced: no loadBalancerHour"),
        "{}",
        lb.source
    );
    assert_eq!(e.unpriced, ["monthly after: ovh-bhs5: load balancers"]);
    assert!(!e.is_complete());
}

#[test]
fn one_time_estimate_egress_parallel_running_and_mover() {
    let fx = FxTable::builtin().with_overrides([parse_override("USD:CAD=1.25").expect("fx")]);
    let (src, dst) = scenario_prices();
    let before = Footprint {
        cpu_cores: 2.0,
        memory_gib: 8.0,
        volumes: vec![VolumeUse {
            storage_class: "gp3".into(),
            gib: 146.0,
        }],
        load_balancers: 1,
    };
    let after = Footprint {
        volumes: vec![VolumeUse {
            storage_class: "high-speed".into(),
            gib: 146.0,
        }],
        ..before.clone()
    };
    let mut input = EstimateInput::new(
        Side {
            cluster: "aws-us-east-1",
            prices: &src,
            footprint: &before,
        },
        Side {
            cluster: "ovh-bhs5",
            prices: &dst,
            footprint: &after,
        },
        500 * GIB_U,
        &fx,
    );
    input.bytes_are_capacity = true;
    input.parallel_hours = 48.0;
    input.mover = MoverUse::running(1.0, 1.0, 10.0);
    let e = estimate(&input).expect("estimate");
    // Egress: 500 GiB, 100 free, 400 × (0.09 × 1.25 = 0.1125)            = 45.00
    // Parallel, source (48 h):
    //   vCPU   2 × 48 = 96 × 0.05                                        =  4.80
    //   memory 8 × 48 = 384 × 0.00625                                    =  2.40
    //   gp3    146 GiB × 48 / 730 = 9.6 GiB-month × 0.10                 =  0.96
    //   LB     1 × 48 = 48 × 0.028125                                    =  1.35
    // Parallel, target (48 h, CAD):
    //   vCPU   96 × 0.03                                                 =  2.88
    //   memory 384 × 0.004                                               =  1.536
    //   high-speed 9.6 GiB-month × 0.12                                  =  1.152
    //   LB     48 LB-h, price unknown                                    =  unpriced
    // Mover, 1 core + 1 GiB for 10 h on each side:
    //   sender   10 × 0.05 + 10 × 0.00625                                =  0.5625
    //   receiver 10 × 0.03 + 10 × 0.004                                  =  0.34
    // total = 45 + 4.8 + 2.4 + 0.96 + 1.35 + 2.88 + 1.536 + 1.152 + 0.5625 + 0.34 = 60.9805 → 60.98
    close(e.one_time.total, 60.9805);
    close(e.rounded().one_time.total, 60.98);
    close(e.to_cost_estimate().one_time, 60.98);
    let storage = e
        .one_time
        .items
        .iter()
        .find(|i| i.name == "parallel running aws-us-east-1: storage gp3")
        .expect("storage line");
    close(storage.quantity, 9.6);
    assert_eq!(storage.unit, "GiB-month");
    let egress = e
        .one_time
        .items
        .iter()
        .find(|i| i.name.contains("tier 1"))
        .expect("egress line");
    assert!(egress.source.contains("requested capacity"));
    assert_eq!(
        e.unpriced,
        [
            "one-time: parallel running ovh-bhs5: load balancers",
            "monthly after: ovh-bhs5: load balancers"
        ]
    );
    assert!(e.display().ends_with("CAD (est.)"));
    assert_eq!(e.display(), "60.98 CAD (est.)");
}

#[test]
fn currency_conversion_usd_cad_eur_and_overrides() {
    let fx = FxTable::builtin();
    // 100 USD × 1.38 = 138.00 CAD
    close(fx.convert(100.0, "USD", "CAD").expect("usd→cad"), 138.0);
    // 150 CAD ÷ 1.50 (EUR→CAD) = 100.00 EUR
    close(fx.convert(150.0, "CAD", "EUR").expect("cad→eur"), 100.0);
    // Through CAD: 100 USD × 1.38 = 138 CAD; ÷ 1.50 = 92.00 EUR
    let c = fx.conversion("USD", "EUR").expect("usd→eur");
    close(c.factor * 100.0, 92.0);
    assert_eq!(c.rates.len(), 2);
    assert!(c.rates.iter().all(|r| r.placeholder));
    // Same currency: factor 1, no rate.
    assert!(fx.conversion("CAD", "CAD").expect("same").rates.is_empty());
    // Unknown currency: a clear error.
    assert_eq!(
        fx.convert(1.0, "GBP", "CAD"),
        Err(CostError::NoRate {
            from: "GBP".into(),
            to: "CAD".into()
        })
    );

    // --fx USD:CAD=1.40 replaces the placeholder: 100 USD = 140.00 CAD, and the rate is no
    // longer a placeholder.
    let fx2 = FxTable::builtin().with_overrides([parse_override("USD:CAD=1.40").expect("fx")]);
    close(fx2.convert(100.0, "USD", "CAD").expect("usd→cad"), 140.0);
    let used = fx2.conversion("USD", "CAD").expect("rate");
    assert!(!used.rates[0].placeholder);
    assert_eq!(used.rates[0].source, "--fx USD:CAD=1.40");
    // An override given the other way round (CAD:USD=0.8) replaces it too: 100 USD ÷ 0.8 = 125 CAD.
    let fx3 = FxTable::builtin().with_overrides([parse_override("CAD:USD=0.8").expect("fx")]);
    close(fx3.convert(100.0, "USD", "CAD").expect("usd→cad"), 125.0);
    // A direct pair beats the path through CAD: 100 USD × 0.90 = 90.00 EUR.
    let fx4 = FxTable::builtin().with_overrides([parse_override("USD:EUR=0.9").expect("fx")]);
    close(fx4.convert(100.0, "USD", "EUR").expect("usd→eur"), 90.0);

    // The ConfigMap shape: 100 EUR × 1.45 = 145.00 CAD, cited with its date and source.
    let rates = FxTable::parse_config_map(
        "rates:\n  - {from: EUR, to: CAD, rate: 1.45, asOf: \"2026-11-27\", source: \"Bank of Canada Valet FXEURCAD\"}\n",
    )
    .expect("configmap");
    let fx5 = FxTable::builtin().with_overrides(rates);
    close(fx5.convert(100.0, "EUR", "CAD").expect("eur→cad"), 145.0);
    assert_eq!(
        fx5.conversion("EUR", "CAD").expect("rate").rates[0].citation(),
        "1.45 EUR→CAD (2026-11-27, Bank of Canada Valet FXEURCAD)"
    );
    // And its errors.
    assert!(matches!(
        FxTable::parse_config_map("rates: [{from: USD, to: CAD, rate: -1}]"),
        Err(CostError::FxTable(_))
    ));
    assert!(matches!(
        FxTable::parse_config_map("rates: [{from: USDX, to: CAD, rate: 1.3}]"),
        Err(CostError::FxTable(_))
    ));
    assert!(matches!(
        FxTable::parse_config_map("rates: {"),
        Err(CostError::FxTable(_))
    ));
}

#[test]
fn fx_override_parsing_errors() {
    let ok = parse_override(" usd:cad=1.38 ").expect("lower case is accepted");
    assert_eq!(
        (ok.from.as_str(), ok.to.as_str(), ok.rate),
        ("USD", "CAD", 1.38)
    );
    for (input, reason) in [
        ("USDCAD=1.38", "missing ':'"),
        ("USD:CAD", "missing '='"),
        ("USD:CAD=", "the rate is empty"),
        ("USD:CAD=abc", "\"abc\" is not a number"),
        ("USD:CAD=-1", "positive"),
        ("USD:CAD=0", "positive"),
        ("USD:CAD=inf", "positive"),
        ("US:CAD=1.3", "\"US\" is not a currency code"),
        ("USD:C4D=1.3", "\"C4D\" is not a currency code"),
        ("USD:USD=1", "USD to itself"),
    ] {
        let e = parse_override(input).expect_err(input);
        let text = e.to_string();
        assert!(matches!(e, CostError::FxOverride { .. }), "{input}: {e:?}");
        assert!(text.contains(reason), "{input}: {text}");
        assert!(text.contains("expected FROM:TO=RATE"), "{text}");
    }
}

#[test]
fn unknown_prices_are_flagged_not_zero() {
    let fx = FxTable::builtin();
    // OVHcloud with nothing declared: every line is unpriced, with the reason.
    let ovh = named("ovh-bhs5", Some("ovhcloud"), None);
    // Azure: 100 GiB free is known, the per-GiB tiers are not.
    let azure = named("aks-canadaeast", Some("azure"), None);
    let fp = Footprint {
        cpu_cores: 1.0,
        memory_gib: 2.0,
        volumes: vec![VolumeUse {
            storage_class: "managed-csi".into(),
            gib: 10.0,
        }],
        load_balancers: 0,
    };
    let mut input = EstimateInput::new(
        Side {
            cluster: "aks-canadaeast",
            prices: &azure,
            footprint: &fp,
        },
        Side {
            cluster: "ovh-bhs5",
            prices: &ovh,
            footprint: &fp,
        },
        300 * GIB_U,
        &fx,
    );
    input.parallel_hours = 10.0;
    input.mover = MoverUse::default();
    let e = estimate(&input).expect("estimate");
    // Egress: 300 GiB = 100 free (priced: 0) + 200 unpriced.
    let free = &e.one_time.items[0];
    assert_eq!(free.name, "egress from aks-canadaeast: free allowance");
    close(free.quantity, 100.0);
    let beyond = &e.one_time.items[1];
    assert_eq!(
        beyond.name,
        "egress from aks-canadaeast: beyond the free allowance"
    );
    close(beyond.quantity, 200.0);
    assert_eq!(beyond.amount, 0.0);
    assert!(
        beyond.source.starts_with(
            "unpriced: no egressPerGiB or egressTiers in SovereignCluster aks-canadaeast spec.pricing or the built-in catalog (provider azure)"
        ),
        "{}",
        beyond.source
    );
    // Nothing priced at all: totals 0, and every line with a quantity is listed.
    close(e.one_time.total, 0.0);
    close(e.monthly_after.total, 0.0);
    // one-time: egress beyond + 3 lines per side (vCPU, memory, storage) × 2 = 7;
    // monthly: 3 before + 3 after = 6.
    assert_eq!(e.unpriced.len(), 13, "{:#?}", e.unpriced);
    assert!(
        e.unpriced
            .contains(&"monthly after: ovh-bhs5: storage managed-csi".to_string())
    );
    assert!(!e.is_complete());
    // A budget check of an incomplete estimate says so.
    let b = check_estimate(
        &e,
        &Money {
            amount: 10.0,
            currency: "CAD".into(),
        },
        &fx,
    )
    .expect("budget");
    assert!(b.within);
    assert!(
        b.message.contains("incomplete: 13 line items unpriced"),
        "{}",
        b.message
    );
    // A provider the catalog does not know, without declared prices: unpriced, "no provider".
    let none = effective_pricing(None, None);
    assert!(none.vcpu_hour.is_none() && none.egress.is_none());
    assert!(none.missing("vcpuHour").contains("no provider declared"));
}

#[test]
fn declared_prices_win_field_by_field_and_remember_their_source() {
    let declared = pricing(
        "currency: CAD\nvcpuHour: 0.05\nstoragePerGiBMonth: {gp3: 0.11}\nfreeEgressGiB: 0\nsource: contract 2026-04\n",
    );
    let p = named("aws-ca-central-1", Some("aws"), Some(&declared));
    let vcpu = p.vcpu_hour.as_ref().expect("vcpu");
    assert_eq!((vcpu.value, vcpu.currency.as_str()), (0.05, "CAD"));
    assert_eq!(
        vcpu.source,
        "SovereignCluster aws-ca-central-1 spec.pricing (contract 2026-04)"
    );
    assert_eq!(p.storage("gp3").expect("gp3").value, 0.11);
    // From the catalog: the control plane (USD) and the egress tiers; the declared 0 GiB
    // allowance wins over the catalog's 100.
    let cp = p.control_plane_hour.as_ref().expect("control plane");
    assert_eq!((cp.value, cp.currency.as_str()), (0.10, "USD"));
    assert!(
        cp.source
            .starts_with("built-in catalog 2026-11-28: EKS standard support")
    );
    assert_eq!(p.free_egress.as_ref().expect("allowance").gib, 0.0);
    assert!(matches!(
        p.egress.as_ref().map(|e| &e.rate),
        Some(EgressRate::Tiered(t)) if t.len() == 4
    ));
    // Unknown stays unknown: AWS memory per GiB-hour is in neither.
    assert!(p.memory_gib_hour.is_none());
    // A declared flat egress price overrides the catalog's tiers.
    let flat = pricing("currency: USD\negressPerGiB: 0.02\n");
    let p = named("aws", Some("aws"), Some(&flat));
    assert_eq!(
        p.egress.as_ref().map(|e| &e.rate),
        Some(&EgressRate::Flat(0.02))
    );
    // A price dated differently from the catalog says so.
    let gp3 = named("x", Some("aws"), None);
    assert!(
        gp3.storage("gp3")
            .expect("gp3")
            .source
            .starts_with("built-in catalog 2026-11-28 (price as of 2024-01-01): gp3")
    );
}

/// Both clusters priced in CAD, so the ledger's figures need no conversion.
fn ledger_prices() -> (PriceList, PriceList) {
    let src = pricing(
        "currency: CAD\negressPerGiB: 0.10\nfreeEgressGiB: 0\nvcpuHour: 0.04\nmemoryGiBHour: 0.01\n",
    );
    let dst = pricing("currency: CAD\nvcpuHour: 0.03\nmemoryGiBHour: 0.01\n");
    (
        named("src", Some("aws"), Some(&src)),
        named("dst", Some("ovhcloud"), Some(&dst)),
    )
}

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().expect("timestamp")
}

#[test]
fn ledger_replayed_after_a_restart_is_not_double_counted() {
    let (src, dst) = ledger_prices();
    let fp = Footprint {
        cpu_cores: 1.0,
        ..Footprint::default()
    };
    let fx = FxTable::builtin();
    let input = LedgerInput {
        source: Side {
            cluster: "src",
            prices: &src,
            footprint: &fp,
        },
        target: Side {
            cluster: "dst",
            prices: &dst,
            footprint: &fp,
        },
        report_currency: "CAD",
        fx: &fx,
        control_plane_share: 0.0,
        egress_already_sent_gib: 0.0,
    };
    let t0 = ts("2026-12-01T10:00:00Z");
    let g = |n: i64| n * (1 << 30);
    let pod = |uid: &str, role, seconds| Observation::MoverPod {
        uid: uid.into(),
        role,
        cpu_cores: 1.0,
        memory_gib: 1.0,
        seconds,
    };

    // Before the crash: pass 1 of data-0 done (10 GiB), parallel running since t0, the sender up
    // for 30 min. At t0 + 1 h:
    //   egress 10 GiB × 0.10 = 1.00; parallel 1 h: 1 × 0.04 + 1 × 0.03 = 0.07;
    //   sender 0.5 core-h × 0.04 + 0.5 GiB-h × 0.01 = 0.025            → 1.095
    let before = vec![
        Observation::PassWireBytes {
            transfer: "data-0".into(),
            pass_wire_bytes: vec![g(10)],
        },
        Observation::Parallel {
            started: t0,
            ended: None,
        },
        pod("sender-a", MoverRole::Sender, 1800),
    ];
    let f1 = Facts::from_observations(&before).expect("facts");
    let a1 = actual(&f1, &input, ts("2026-12-01T11:00:00Z")).expect("actual");
    close(a1.one_time.total, 1.095);

    // After the restart the operator re-reads everything: data-0 now shows both passes (and is
    // read twice), data-1 its single pass, the sender's stale 1,800 s again beside its 3,600 s,
    // the receiver, and the parallel interval closed at t0 + 2 h.
    let after = vec![
        Observation::PassWireBytes {
            transfer: "data-0".into(),
            pass_wire_bytes: vec![g(10), g(2)],
        },
        pod("sender-a", MoverRole::Sender, 1800),
        Observation::PassWireBytes {
            transfer: "data-1".into(),
            pass_wire_bytes: vec![g(5)],
        },
        Observation::PassWireBytes {
            transfer: "data-0".into(),
            pass_wire_bytes: vec![g(10), g(2)],
        },
        pod("sender-a", MoverRole::Sender, 3600),
        pod("receiver-a", MoverRole::Receiver, 3600),
        Observation::Parallel {
            started: t0,
            ended: Some(ts("2026-12-01T12:00:00Z")),
        },
    ];
    // Expected, each fact once:
    //   wire bytes 10 + 2 + 5 = 17 GiB (a naive sum of the reports would be 10+10+2+10+2+5 = 39)
    //   egress     17 GiB × 0.10                          = 1.70
    //   parallel   2 h: src 1 core × 2 h × 0.04 = 0.08; dst 1 × 2 × 0.03 = 0.06   = 0.14
    //   sender     1 core-h × 0.04 + 1 GiB-h × 0.01       = 0.05
    //   receiver   1 core-h × 0.03 + 1 GiB-h × 0.01       = 0.04
    //   total                                             = 1.93 CAD
    let now = ts("2026-12-01T15:00:00Z"); // after the end: the closed interval ignores it
    let replayed: Vec<Observation> = before.iter().chain(after.iter()).cloned().collect();
    let f_replay = Facts::from_observations(&replayed).expect("facts");
    let f_after_only = Facts::from_observations(&after).expect("facts");
    // Twice everything, as if the operator restarted again and re-applied it all.
    let twice: Vec<Observation> = replayed.iter().chain(replayed.iter()).cloned().collect();
    let f_twice = Facts::from_observations(&twice).expect("facts");
    // Kept facts from before the crash merged with the new ones.
    let mut f_merged = f1.clone();
    f_merged.merge(&f_after_only);
    // Reverse order.
    let reversed: Vec<Observation> = replayed.iter().rev().cloned().collect();
    let f_reversed = Facts::from_observations(&reversed).expect("facts");

    assert_eq!(f_replay.wire_bytes(), 17 * GIB_U);
    for f in [&f_after_only, &f_twice, &f_merged, &f_reversed] {
        assert_eq!(f, &f_replay);
    }
    // Every rotation of the observation order gives the same facts.
    for k in 0..replayed.len() {
        let mut rotated = replayed.clone();
        rotated.rotate_left(k);
        assert_eq!(Facts::from_observations(&rotated).expect("facts"), f_replay);
    }
    let a = actual(&f_replay, &input, now).expect("actual");
    close(a.one_time.total, 1.93);
    let status = a.to_cost_actual();
    assert_eq!(status.one_time, 1.93);
    assert_eq!(status.wire_bytes, 18_253_611_008); // 17 × 1,073,741,824
    assert_eq!(status.parallel_seconds, 7200);
    assert_eq!(a.display(), "1.93 CAD");
    assert!(a.unpriced.is_empty());

    // Invalid observations are refused and change nothing.
    let mut f = f_replay.clone();
    assert!(
        f.observe(&Observation::PassWireBytes {
            transfer: "data-2".into(),
            pass_wire_bytes: vec![g(1), -5],
        })
        .is_err()
    );
    assert!(
        f.observe(&Observation::Parallel {
            started: t0,
            ended: Some(ts("2026-12-01T09:00:00Z")),
        })
        .is_err()
    );
    assert_eq!(f, f_replay);
}

#[test]
fn budget_over_and_under_with_currency_conversion() {
    let fx = FxTable::builtin();
    let cad = |amount| Money {
        amount,
        currency: "CAD".into(),
    };
    // 6,120.45 CAD against 5,000.00 CAD: over by 6,120.45 − 5,000.00 = 1,120.45.
    let over = check(CostKind::Estimated, 6120.45, "CAD", 0, &cad(5000.0), &fx).expect("check");
    assert!(!over.within);
    assert_eq!(
        over.message,
        "estimated one-time cost 6,120.45 CAD exceeds the budget of 5,000.00 CAD by 1,120.45 CAD"
    );
    // Equal (at cents) is within.
    assert!(
        check(CostKind::Estimated, 5000.004, "CAD", 0, &cad(5000.0), &fx)
            .expect("check")
            .within
    );
    // A budget in USD: 5,000.00 USD × 1.38 = 6,900.00 CAD; 6,900.00 − 6,120.45 = 779.55 left.
    let usd = Money {
        amount: 5000.0,
        currency: "USD".into(),
    };
    let under = check(CostKind::Estimated, 6120.45, "CAD", 0, &usd, &fx).expect("check");
    assert!(under.within);
    close(under.budget, 6900.0);
    assert_eq!(
        under.message,
        "estimated one-time cost 6,120.45 CAD is within the budget of 6,900.00 CAD \
         (5,000.00 USD at 1.38 USD→CAD (2026-11-28, placeholder)), 779.55 CAD left"
    );
    // An actual cost against a budget in EUR: 800 EUR × 1.50 = 1,200.00 CAD;
    // 1,203.55 − 1,200.00 = 3.55 over.
    let eur = Money {
        amount: 800.0,
        currency: "EUR".into(),
    };
    let actual_over = check(CostKind::Actual, 1203.55, "CAD", 0, &eur, &fx).expect("check");
    assert!(!actual_over.within);
    assert!(
        actual_over
            .message
            .starts_with("actual cost so far 1,203.55 CAD exceeds the budget of 1,200.00 CAD"),
        "{}",
        actual_over.message
    );
    assert!(actual_over.message.ends_with("by 3.55 CAD"));
    // A budget in a currency without a rate is an error, not a silent pass.
    let gbp = Money {
        amount: 1.0,
        currency: "GBP".into(),
    };
    assert!(check(CostKind::Actual, 1.0, "CAD", 0, &gbp, &fx).is_err());
}

#[test]
fn status_display_shows_the_estimate_then_the_actual() {
    let fx = FxTable::builtin();
    let (src, dst) = ledger_prices();
    let fp = Footprint::default();
    let mut input = EstimateInput::new(
        Side {
            cluster: "src",
            prices: &src,
            footprint: &fp,
        },
        Side {
            cluster: "dst",
            prices: &dst,
            footprint: &fp,
        },
        48_121 * GIB_U / 1000, // 48.121 GiB × 0.10 = 4.8121 → 4.81
        &fx,
    );
    input.mover = MoverUse::default();
    let e = estimate(&input).expect("estimate");
    let s = cost_status("CAD", Some(&e), None);
    assert_eq!(s.display.as_deref(), Some("4.81 CAD (est.)"));
    assert_eq!(s.estimated.as_ref().map(|c| c.one_time), Some(4.81));
    assert!(
        s.items
            .iter()
            .all(|i| i.name.starts_with("one-time: ") || i.name.starts_with("monthly "))
    );
    let facts = Facts::from_observations(&[Observation::PassWireBytes {
        transfer: "v".into(),
        pass_wire_bytes: vec![12 * (1 << 30)],
    }])
    .expect("facts");
    let ledger_input = LedgerInput {
        source: input.source,
        target: input.target,
        report_currency: "CAD",
        fx: &fx,
        control_plane_share: 0.0,
        egress_already_sent_gib: 0.0,
    };
    let a = actual(&facts, &ledger_input, ts("2026-12-01T00:00:00Z")).expect("actual");
    // 12 GiB × 0.10 = 1.20
    let s = cost_status("CAD", Some(&e), Some(&a));
    assert_eq!(s.display.as_deref(), Some("1.20 CAD"));
    assert_eq!(round_cents(a.one_time.total), 1.2);
}

#[test]
fn invalid_quantities_are_errors_not_panics() {
    let fx = FxTable::builtin();
    let (src, dst) = ledger_prices();
    let bad = Footprint {
        cpu_cores: f64::NAN,
        ..Footprint::default()
    };
    let ok = Footprint::default();
    let input = EstimateInput::new(
        Side {
            cluster: "src",
            prices: &src,
            footprint: &bad,
        },
        Side {
            cluster: "dst",
            prices: &dst,
            footprint: &ok,
        },
        0,
        &fx,
    );
    assert!(matches!(
        estimate(&input),
        Err(CostError::InvalidQuantity { .. })
    ));
    let mut input = EstimateInput {
        source: Side {
            cluster: "src",
            prices: &src,
            footprint: &ok,
        },
        ..input
    };
    input.parallel_hours = -1.0;
    assert!(estimate(&input).is_err());
}

#[test]
fn a_negative_declared_price_is_unpriced_not_subtracted() {
    let fx = FxTable::builtin();
    let src = named(
        "src",
        None,
        Some(&pricing(
            "currency: CAD\nvcpuHour: -0.04\negressPerGiB: 0.10\n",
        )),
    );
    let dst = named(
        "dst",
        None,
        Some(&pricing("currency: CAD\nvcpuHour: 0.03\n")),
    );
    let fp = Footprint {
        cpu_cores: 1.0,
        ..Footprint::default()
    };
    let mut input = EstimateInput::new(
        Side {
            cluster: "src",
            prices: &src,
            footprint: &fp,
        },
        Side {
            cluster: "dst",
            prices: &dst,
            footprint: &fp,
        },
        10 * GIB_U,
        &fx,
    );
    input.parallel_hours = 1.0;
    input.mover = MoverUse::default();
    let e = estimate(&input).expect("estimate");
    // egress 10 GiB × 0.10 = 1.00; target vCPU 1 × 1 h × 0.03 = 0.03; source vCPU unpriced.
    close(e.one_time.total, 1.03);
    assert_eq!(
        e.one_time.items[0].name,
        "egress from src: tier 1 (per GiB)"
    );
    assert!(
        e.unpriced
            .contains(&"one-time: parallel running src: vCPU".to_string())
    );
    assert!(
        check(
            CostKind::Estimated,
            -1.0,
            "CAD",
            0,
            &Money {
                amount: 1.0,
                currency: "CAD".into()
            },
            &fx
        )
        .is_err()
    );
}
