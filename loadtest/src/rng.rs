//! Deterministic randomness for workloads: a seeded generator and the key
//! distributions (uniform, zipf). Same seed, same flags: same request sequence.

/// SplitMix64: tiny, fast, and good enough for picking keys; not for secrets.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// A generator for stream `index` derived from `seed`, independent of the
    /// others (each connection gets its own, so the sequence does not depend on
    /// how connections interleave).
    pub fn derive(seed: u64, index: u64) -> Self {
        let mut mixer = Rng::new(seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
        Rng::new(mixer.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)` (multiply-shift; the bias is below 2^-64 * n).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// How keys (entity ranks) are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    Uniform,
    /// Zipf with exponent `s` (> 0): rank 0 is the hottest.
    Zipf(f64),
}

impl std::fmt::Display for KeyDist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyDist::Uniform => write!(f, "uniform"),
            KeyDist::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Draws ranks in `[0, n)` from a [`KeyDist`]. Zipf uses rejection-inversion
/// (Hörmann & Derflinger 1996): O(1) memory and expected O(1) time, so a
/// million-entity key space costs nothing to set up.
#[derive(Debug, Clone)]
pub struct KeySampler {
    n: u64,
    zipf: Option<Zipf>,
}

impl KeySampler {
    pub fn new(dist: KeyDist, n: u64) -> Self {
        assert!(n > 0, "empty key space");
        let zipf = match dist {
            KeyDist::Uniform => None,
            KeyDist::Zipf(s) => Some(Zipf::new(n, s)),
        };
        KeySampler { n, zipf }
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match &self.zipf {
            None => rng.below(self.n),
            Some(z) => z.sample(rng) - 1,
        }
    }
}

/// Rejection-inversion Zipf sampler over `1..=n`, P(k) ∝ k^-s.
#[derive(Debug, Clone)]
struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    threshold: f64,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Self {
        assert!(s > 0.0 && s.is_finite(), "zipf exponent must be > 0");
        let mut z = Zipf {
            n: n as f64,
            s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            threshold: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.threshold = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    fn sample(&self, rng: &mut Rng) -> u64 {
        // Expected iterations are below 1.1 for every s and n; the bound only
        // guards against a broken float environment.
        for _ in 0..1_000 {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.threshold || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
        1
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(exp(x) - 1) / x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(dist: KeyDist, n: u64, draws: usize, seed: u64) -> Vec<u64> {
        let sampler = KeySampler::new(dist, n);
        let mut rng = Rng::new(seed);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            let k = sampler.sample(&mut rng);
            assert!(k < n, "rank {k} out of range");
            counts[k as usize] += 1;
        }
        counts
    }

    #[test]
    fn same_seed_same_sequence() {
        let sampler = KeySampler::new(KeyDist::Zipf(1.1), 10_000);
        let draw = |seed| {
            let mut rng = Rng::derive(seed, 3);
            (0..1000)
                .map(|_| sampler.sample(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert_ne!(Rng::derive(7, 0).next_u64(), Rng::derive(7, 1).next_u64());
    }

    #[test]
    fn uniform_covers_every_key_evenly() {
        let counts = histogram(KeyDist::Uniform, 100, 200_000, 1);
        let expected = 2_000.0;
        for (k, &c) in counts.iter().enumerate() {
            let dev = (c as f64 - expected).abs() / expected;
            assert!(dev < 0.12, "key {k}: {c} draws, expected ~{expected}");
        }
    }

    #[test]
    fn zipf_matches_exact_probabilities() {
        let n = 1_000u64;
        let s = 1.0;
        let draws = 400_000;
        let counts = histogram(KeyDist::Zipf(s), n, draws, 42);
        let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for k in [1u64, 2, 3, 10, 100] {
            let p = (k as f64).powf(-s) / norm;
            let observed = counts[(k - 1) as usize] as f64 / draws as f64;
            let rel = (observed - p).abs() / p;
            assert!(rel < 0.1, "rank {k}: p={p:.5} observed={observed:.5}");
        }
        // rank 1 about twice as frequent as rank 2 for s = 1
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.8..2.2).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn zipf_skew_grows_with_exponent() {
        let top10 = |s| {
            let c = histogram(KeyDist::Zipf(s), 10_000, 100_000, 5);
            c[..10].iter().sum::<u64>() as f64 / 100_000.0
        };
        let (low, mid, high) = (top10(0.5), top10(1.0), top10(1.5));
        assert!(low < mid && mid < high, "{low} {mid} {high}");
        // s = 1.5: the top 10 of 10k keys take most of the traffic.
        assert!(high > 0.6, "top10 share {high}");
        // uniform: the top 10 take ~0.1%.
        let uni = histogram(KeyDist::Uniform, 10_000, 100_000, 5);
        assert!((uni[..10].iter().sum::<u64>() as f64) < 300.0);
    }

    #[test]
    fn zipf_single_key_and_small_exponent() {
        let c = histogram(KeyDist::Zipf(1.0), 1, 1000, 3);
        assert_eq!(c, vec![1000]);
        let c = histogram(KeyDist::Zipf(0.01), 50, 50_000, 3);
        assert!(c.iter().all(|&x| x > 600), "near-uniform expected: {c:?}");
    }
}
