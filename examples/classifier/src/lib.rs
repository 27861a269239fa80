//! A small image classifier trained in plain Rust (no dependencies, so it runs inside a Wasm
//! guest) and saved as ONNX, so that the host's `wasi:nn` (tract) can run it.
//!
//! Images become [`INPUTS`] features ([`features`]: grayscale, 8×8, 0 to 1); [`train`] fits an
//! [`Mlp`] (one ReLU hidden layer, softmax output) with mini-batch SGD and momentum;
//! [`Mlp::to_onnx`] writes it as an ONNX model `image` [1, 64] → `probabilities` [1, classes].

mod onnx;

/// Features per image: an 8×8 grayscale thumbnail.
pub const INPUTS: usize = 64;

/// The side of the thumbnail.
const SIDE: usize = 8;

/// One training example: features and class index.
pub type Sample = ([f32; INPUTS], usize);

/// An image (`width × height` pixels, RGB, row-major) as model input: its gray levels averaged
/// over an 8×8 grid of areas, scaled to 0..1.
pub fn features(width: usize, height: usize, rgb: &[u8]) -> [f32; INPUTS] {
    let mut sums = [0f64; INPUTS];
    let mut weights = [0f64; INPUTS];
    for y in 0..height {
        for x in 0..width {
            let i = 3 * (y * width + x);
            let gray = (f64::from(rgb[i]) + f64::from(rgb[i + 1]) + f64::from(rgb[i + 2])) / 3.0;
            let cell = (y * SIDE / height) * SIDE + x * SIDE / width;
            sums[cell] += gray;
            weights[cell] += 1.0;
        }
    }
    std::array::from_fn(|i| if weights[i] > 0.0 { (sums[i] / weights[i] / 255.0) as f32 } else { 0.0 })
}

/// How to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Units in the hidden layer.
    pub hidden: usize,
    /// Passes over the training samples.
    pub epochs: usize,
    /// SGD step size.
    pub learning_rate: f32,
    /// Samples per step.
    pub batch_size: usize,
    /// Seeds the initial weights and the shuffles: the same seed gives the same model.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { hidden: 32, epochs: 30, learning_rate: 0.1, batch_size: 16, seed: 7 }
    }
}

/// A trained network: `INPUTS` → `hidden` (ReLU) → `classes` (softmax).
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    hidden: usize,
    classes: usize,
    /// `[INPUTS × hidden]`, row-major.
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// `[hidden × classes]`, row-major.
    w2: Vec<f32>,
    b2: Vec<f32>,
}

/// splitmix64: a small, good, deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// Split `samples` after a seeded shuffle: (training, validation), `validation_fraction` of them
/// (rounded) for validation.
pub fn split(samples: &[Sample], validation_fraction: f32, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let mut shuffled = samples.to_vec();
    Rng(seed).shuffle(&mut shuffled);
    let validation = ((samples.len() as f32) * validation_fraction).round() as usize;
    let training = shuffled.split_off(validation.min(samples.len()));
    (training, shuffled)
}

/// Fit an [`Mlp`] to `samples` (class indexes below `classes`), calling `on_epoch(epoch, mean
/// loss, training accuracy)` after each epoch (from 1).
pub fn train(
    samples: &[Sample],
    classes: usize,
    options: &TrainOptions,
    mut on_epoch: impl FnMut(usize, f32, f32),
) -> Mlp {
    let mut rng = Rng(options.seed);
    let h = options.hidden;
    let mut he = |fan_in: usize, n: usize| -> Vec<f32> {
        let scale = (6.0 / fan_in as f32).sqrt();
        (0..n).map(|_| (rng.unit() * 2.0 - 1.0) * scale).collect()
    };
    let mut mlp = Mlp {
        hidden: h,
        classes,
        w1: he(INPUTS, INPUTS * h),
        b1: vec![0.0; h],
        w2: he(h, h * classes),
        b2: vec![0.0; classes],
    };
    let mut velocity = mlp.zeroed();
    let mut order: Vec<usize> = (0..samples.len()).collect();
    for epoch in 1..=options.epochs {
        rng.shuffle(&mut order);
        let (mut loss, mut correct) = (0.0, 0);
        for batch in order.chunks(options.batch_size.max(1)) {
            let mut grad = mlp.zeroed();
            for &i in batch {
                let (x, label) = &samples[i];
                let (hidden, probabilities) = mlp.forward(x);
                loss -= probabilities[*label].max(1e-12).ln();
                correct += usize::from(argmax(&probabilities) == *label);
                // Softmax with cross-entropy: the output error is p - onehot.
                let mut d_out = probabilities;
                d_out[*label] -= 1.0;
                let mut d_hidden = vec![0.0; h];
                let rows = grad.w2.chunks_mut(classes).zip(mlp.w2.chunks(classes));
                for (((grad_row, row), &activation), d_h) in rows.zip(&hidden).zip(&mut d_hidden) {
                    for ((g, w), d) in grad_row.iter_mut().zip(row).zip(&d_out) {
                        *g += activation * d;
                        *d_h += w * d;
                    }
                    if activation <= 0.0 {
                        *d_h = 0.0;
                    }
                }
                add_scaled(&mut grad.b2, &d_out, 1.0);
                for (grad_row, xi) in grad.w1.chunks_mut(h).zip(x) {
                    add_scaled(grad_row, &d_hidden, *xi);
                }
                add_scaled(&mut grad.b1, &d_hidden, 1.0);
            }
            let step = options.learning_rate / batch.len() as f32;
            for (w, v, g) in mlp
                .params_mut()
                .into_iter()
                .zip(velocity.params_mut())
                .zip(grad.params_mut())
                .map(|((w, v), g)| (w, v, g))
            {
                for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g.iter()) {
                    *v = 0.9 * *v - step * g;
                    *w += *v;
                }
            }
        }
        let n = samples.len().max(1) as f32;
        on_epoch(epoch, loss / n, correct as f32 / n);
    }
    mlp
}

/// `target += scale * values`, element by element.
fn add_scaled(target: &mut [f32], values: &[f32], scale: f32) {
    target.iter_mut().zip(values).for_each(|(t, v)| *t += scale * v);
}

fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

impl Mlp {
    /// The hidden activations and the class probabilities of one input.
    fn forward(&self, x: &[f32; INPUTS]) -> (Vec<f32>, Vec<f32>) {
        let (h, c) = (self.hidden, self.classes);
        let mut hidden = self.b1.clone();
        for (row, xi) in self.w1.chunks(h).zip(x) {
            add_scaled(&mut hidden, row, *xi);
        }
        hidden.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut logits = self.b2.clone();
        for (row, activation) in self.w2.chunks(c).zip(&hidden) {
            add_scaled(&mut logits, row, *activation);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        (hidden, exp.into_iter().map(|e| e / sum).collect())
    }

    /// A network of the same shape with every parameter zero (for gradients and momentum).
    fn zeroed(&self) -> Mlp {
        let zeros = |v: &Vec<f32>| vec![0.0; v.len()];
        Mlp { w1: zeros(&self.w1), b1: zeros(&self.b1), w2: zeros(&self.w2), b2: zeros(&self.b2), ..*self }
    }

    fn params_mut(&mut self) -> [&mut Vec<f32>; 4] {
        [&mut self.w1, &mut self.b1, &mut self.w2, &mut self.b2]
    }

    /// Class probabilities of one input.
    pub fn predict(&self, x: &[f32; INPUTS]) -> Vec<f32> {
        self.forward(x).1
    }

    /// The share of `samples` whose most likely class is their label (0 for none).
    pub fn accuracy(&self, samples: &[Sample]) -> f32 {
        let correct = samples.iter().filter(|(x, label)| argmax(&self.predict(x)) == *label).count();
        correct as f32 / samples.len().max(1) as f32
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` noisy samples of `classes` random prototypes.
    fn synthetic(classes: usize, n: usize, seed: u64) -> Vec<Sample> {
        let mut rng = Rng(seed);
        let prototypes: Vec<[f32; INPUTS]> = (0..classes).map(|_| std::array::from_fn(|_| rng.unit())).collect();
        (0..n)
            .map(|i| {
                let label = i % classes;
                (std::array::from_fn(|p| (prototypes[label][p] + (rng.unit() - 0.5) * 0.6).clamp(0.0, 1.0)), label)
            })
            .collect()
    }

    #[test]
    fn learns_noisy_prototypes_well_above_chance() {
        let samples = synthetic(10, 600, 1);
        let (training, validation) = split(&samples, 0.2, 2);
        assert_eq!((training.len(), validation.len()), (480, 120));
        let mut losses = Vec::new();
        let model = train(&training, 10, &TrainOptions::default(), |_, loss, _| losses.push(loss));
        assert_eq!(losses.len(), 30);
        assert!(losses[29] < losses[0] / 2.0, "the loss falls: {losses:?}");
        // Chance is 0.1; the classes overlap little at this noise, so a working network is near 1.
        let accuracy = model.accuracy(&validation);
        assert!(accuracy >= 0.9, "validation accuracy {accuracy}");
        let probabilities = model.predict(&validation[0].0);
        assert!((probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn the_same_seed_gives_the_same_model() {
        let samples = synthetic(3, 90, 3);
        let options = TrainOptions { epochs: 3, ..TrainOptions::default() };
        let a = train(&samples, 3, &options, |_, _, _| {});
        assert_eq!(a, train(&samples, 3, &options, |_, _, _| {}));
        assert_ne!(a, train(&samples, 3, &TrainOptions { seed: 8, ..options }, |_, _, _| {}));
    }

    #[test]
    fn features_average_areas_to_an_8x8_gray_grid() {
        let pixels: Vec<u8> = (0..64u8).flat_map(|v| [v * 4, v * 4, v * 4]).collect();
        let f = features(8, 8, &pixels);
        assert!((0..64).all(|i| (f[i] - (i as f32 * 4.0) / 255.0).abs() < 1e-6), "an 8x8 image maps to its pixels");
        // 16x16 with 2x2 blocks of one value per cell averages to that value; red counts a third.
        let big: Vec<u8> = (0..256).flat_map(|i| if (i / 16) / 2 == 0 { [255, 0, 0] } else { [0, 0, 0] }).collect();
        let f = features(16, 16, &big);
        assert!((f[0] - 1.0 / 3.0).abs() < 1e-6 && f[8] == 0.0);
    }
}
