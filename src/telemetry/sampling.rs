//! Which requests get spans: `[tracing] sample_ratio` for a trace the request starts, the
//! client's decision for a trace it continues (W3C `traceparent` flags). The same decisions as
//! the SDK's `ParentBased(TraceIdRatioBased(ratio))`, made without it: the SDK's sampler takes
//! the parent as an OpenTelemetry context and answers with attributes and a trace state, about
//! 250 instructions per request that nearly every request (unsampled) throws away
//! (bench/RESULTS.md, "Scale-out").

use opentelemetry::trace::TraceId;

/// `sample_ratio` as a bound on a trace id's low 63 bits, as the SDK's `TraceIdRatioBased`
/// compares them (the ids are random: the ratio of traces sampled is `sample_ratio`).
#[derive(Clone, Copy, Debug)]
pub(super) struct RootSampler {
    /// Sampled when the trace id's low 63 bits are below this; `None`: every trace (ratio 1).
    below: Option<u64>,
}

impl RootSampler {
    /// The sampler for `ratio` (0 to 1, checked by the config).
    pub(super) fn new(ratio: f64) -> RootSampler {
        RootSampler {
            below: (ratio < 1.0).then(|| (ratio.max(0.0) * (1u64 << 63) as f64) as u64),
        }
    }

    /// Whether a trace this gateway starts with `trace_id` is sampled.
    pub(super) fn samples(self, trace_id: TraceId) -> bool {
        let Some(below) = self.below else {
            return true;
        };
        let bytes = trace_id.to_bytes();
        let mut low = [0; 8];
        low.copy_from_slice(&bytes[8..]);
        (u64::from_be_bytes(low) >> 1) < below
    }
}

#[cfg(test)]
mod tests {
    use super::RootSampler;
    use opentelemetry::trace::{SpanKind, TraceId};
    use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};

    /// The SDK's own answer for a root span of `trace_id`.
    fn sdk_samples(ratio: f64, trace_id: TraceId) -> bool {
        let sampler = Sampler::TraceIdRatioBased(ratio);
        let result = sampler.should_sample(None, trace_id, "", &SpanKind::Server, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }

    #[test]
    fn decides_every_trace_id_as_the_sdk_does() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u128;
        for ratio in [0.0, 1e-9, 0.01, 0.25, 0.5, 0.999, 1.0] {
            let ours = RootSampler::new(ratio);
            let mut sampled = 0;
            for _ in 0..20_000 {
                state = state
                    .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
                    .wrapping_add(0x5851_f42d_4c95_7f2d_1405_7b7e_f767_814f);
                let trace_id = TraceId::from(state);
                assert_eq!(ours.samples(trace_id), sdk_samples(ratio, trace_id));
                sampled += usize::from(ours.samples(trace_id));
            }
            let expected = ratio * 20_000.0;
            assert!(
                (sampled as f64 - expected).abs() <= 20_000.0 * 0.02,
                "ratio {ratio}: {sampled} of 20000 sampled"
            );
        }
        // The bounds themselves: ids just below and at the bound of a ratio of one half.
        let half = RootSampler::new(0.5);
        assert!(half.samples(TraceId::from(((1u128 << 62) - 1) << 1)));
        assert!(!half.samples(TraceId::from((1u128 << 62) << 1)));
        assert!(!RootSampler::new(0.0).samples(TraceId::from(0u128)));
    }
}
