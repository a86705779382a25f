//! Convolution, pooling and batch norm against PyTorch's `torch.nn.functional` in f64, with
//! non-default arguments (stride, padding, dilation, groups, momentum, eps). The numbers come
//! from `scripts/conv_golden.py` (torch 2.15): the inputs, the output, and the gradients of
//! `sum(output * r)` for a fixed `r`.

use gradus_autograd::ndarray::{ArrayD, IxDyn};
use gradus_autograd::{ParamStore, Var, value_and_grad};
use serde_json::Value;

fn array(v: &Value) -> ArrayD<f64> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), floats(&v["values"])).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn pair(v: &Value) -> (usize, usize) {
    let a = v.as_array().unwrap();
    (
        a[0].as_u64().unwrap() as usize,
        a[1].as_u64().unwrap() as usize,
    )
}

fn assert_close(name: &str, what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: {what} sizes differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-10 * (1.0 + w.abs()),
            "{name}: {what}[{i}] = {g}, PyTorch {w}"
        );
    }
}

#[test]
fn conv_pool_and_batch_norm_match_pytorch() {
    let golden: Value = serde_json::from_str(include_str!("conv_golden.json")).expect("valid JSON");
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let k = &case["kwargs"];
        let inputs: Vec<ArrayD<f64>> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(array)
            .collect();
        let mut params = ParamStore::<f64>::new();
        let ids: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, a)| params.insert(format!("in{i}"), a.clone()).unwrap())
            .collect();
        let out_shape = array(&case["output"]).shape().to_vec();
        let r = ArrayD::from_shape_vec(IxDyn(&out_shape), floats(&case["r"])).unwrap();
        let mut output = None;
        let mut stats = None;
        let (_, grads) = value_and_grad(|tape| {
            let v: Vec<Var<'_, f64>> = ids.iter().map(|&id| tape.param(&params, id)).collect();
            let y = if name.starts_with("conv2d") {
                v[0].conv2d(
                    v[1],
                    v.get(2).copied(),
                    pair(&k["stride"]),
                    pair(&k["padding"]),
                    pair(&k["dilation"]),
                    k["groups"].as_u64().unwrap() as usize,
                )
            } else if name == "max_pool2d" {
                v[0].max_pool2d(pair(&k["kernel"]), pair(&k["stride"]), pair(&k["padding"]))
            } else if name == "avg_pool2d" {
                v[0].avg_pool2d(pair(&k["kernel"]), pair(&k["stride"]), pair(&k["padding"]))
            } else if name.starts_with("adaptive_avg_pool2d") {
                v[0].adaptive_avg_pool2d(pair(&k["output"]))
            } else if name.starts_with("batch_norm") {
                let rm = ArrayD::from_shape_vec(IxDyn(&[3]), floats(&k["running_mean"])).unwrap();
                let rv = ArrayD::from_shape_vec(IxDyn(&[3]), floats(&k["running_var"])).unwrap();
                let (y, s) = v[0].batch_norm(
                    &rm,
                    &rv,
                    Some(v[1]),
                    Some(v[2]),
                    k["training"].as_bool().unwrap(),
                    k["momentum"].as_f64().unwrap(),
                    k["eps"].as_f64().unwrap(),
                );
                stats = s;
                y
            } else {
                panic!("unknown case {name}")
            };
            output = Some((*y.value()).clone());
            (y * tape.constant(r.clone())).sum()
        });
        let out = output.unwrap();
        assert_eq!(out.shape(), out_shape.as_slice(), "{name}: output shape");
        let out: Vec<f64> = out.iter().copied().collect();
        assert_close(name, "output", &out, &floats(&case["output"]["values"]));
        for (i, (id, want)) in ids
            .iter()
            .zip(case["grads"].as_array().unwrap())
            .enumerate()
        {
            let got: Vec<f64> = grads.get(*id).unwrap().iter().copied().collect();
            assert_close(name, &format!("grad of input {i}"), &got, &floats(want));
        }
        if name.starts_with("batch_norm") {
            let (want_mean, want_var) = (
                floats(&case["running_mean_after"]),
                floats(&case["running_var_after"]),
            );
            match stats {
                Some(s) => {
                    assert_close(name, "running_mean", s.mean.as_slice().unwrap(), &want_mean);
                    assert_close(name, "running_var", s.var.as_slice().unwrap(), &want_var);
                }
                // Evaluation leaves the running statistics as they were.
                None => assert_close(
                    name,
                    "running_mean",
                    &floats(&k["running_mean"]),
                    &want_mean,
                ),
            }
        }
    }
}
