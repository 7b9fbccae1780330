"""What a run leaves and what is made from it: the run folder and its lock, the checkpoint,
``metrics.jsonl``/``summary.json`` (results), TensorBoard event files (tracking), the
console tables (reporting), ``protofl report``/``compare`` tables and their statistics,
plots, and the model export."""
