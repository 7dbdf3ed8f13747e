"""Experiment runners and their plots: the benchmark against D2L (`bench`), chapter 07's scaling
sweep (`sweep`, `scaling_plots`) and chapter 10's comparison (`compare`). Each runner is a CLI
command (`python -m vitcourse bench|sweep|compare`) writing committed results under data/results.
Import the module you need (`from vitcourse.experiments import compare`): nothing is imported here,
so that loading one runner does not load the others."""
