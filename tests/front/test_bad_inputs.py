"""Bad inputs as a table: every command, given what a careless or hostile user gives it, answers with
one line that names the problem and a non-zero exit code; never a traceback, never silence.

Each case is (command line, files it needs, the line's expected words). `{tmp}` is a scratch folder;
FILES are written there first. A new command gets its rows here."""

import pytest

from workbench.front.cli import main

LADDER = "n_params,value\n1e4,6.0\n3e4,5.5\n1e5,5.1\n3e5,4.8\n"
FILES = {
    "latin1.yaml": "sweep:\n  family: ar32 # caf\xe9\n".encode("latin-1"),
    "binary.yaml": b"\x00\x01\x02binary\x00",
    "base-list.yaml": b"base: [1]\n",
    "base-int.yaml": b"base: 5\n",
    "int.yaml": b"5\n",
    "dup-key.yaml": b"base: smoke\nsweep:\n  train:\n    lr: 1.0e-3\n    lr: 2.0e-3\n",
    "list-key.yaml": b"? [a]\n: 1\n",
    "ladder.csv": LADDER.encode(),
    "two-values.csv": b"n_params,value,value\n1e4,6.0,1\n3e4,5.5,1\n1e5,5.1,1\n",
    "two-sizes.csv": b"n_params,n_params,value\n1e4,1,6.0\n3e4,1,5.5\n1e5,1,5.1\n",
    "empty-variant.csv": b"variant,n_params,value\na,1e4,6.0\n,3e4,5.5\na,1e5,5.1\n",
    "huge.csv": b"n_params,value\n1e4,6.0\n3e4,1e308\n1e5,5.1\n",
    "tiny.csv": b"n_params,value\n1e4,6.0\n3e4,1e-320\n1e5,5.1\n",
    "int-overflow.csv": b"n_params,value\n9007199254740993,6.0\n9007199254740992,5.5\n1e5,5.1\n",
    "int-overflow-ints.csv": b"n_params,value\n9007199254740993,6.0\n9007199254740992,5.5\n100000,5.1\n",
    "header-only.csv": b"n_params,value\n",
    "no-value.csv": b"num_params,score\n1e4,6.0\n3e4,5.5\n",
    "a-file": b"not a folder\n",
}

CASES = [
    # profiles
    (["sweep", "--profile", "{tmp}/latin1.yaml", "--dry-run"], "is not UTF-8 text"),
    (["sweep", "--profile", "{tmp}/binary.yaml", "--dry-run"], "is a binary file, not YAML text"),
    (["sweep", "--profile", "{tmp}/base-list.yaml", "--dry-run"], "base must name one profile"),
    (["sweep", "--profile", "{tmp}/base-int.yaml", "--dry-run"], "base must name one profile"),
    (["sweep", "--profile", "{tmp}/int.yaml", "--dry-run"], "must be a mapping of sections, got a int"),
    (["sweep", "--profile", "{tmp}/dup-key.yaml", "--dry-run"], "key 'lr' is given twice"),
    (["sweep", "--profile", "{tmp}", "--dry-run"], "is not a file"),
    (["sweep", "--profile", "{tmp}/list-key.yaml", "--dry-run"], "a key must be a name, got ['a']"),
    # overrides and values
    (["sweep", "--profile", "smoke", "--set", "sweep.layers=[9]", "--dry-run"], "defines L1-8, not L9"),
    (["sweep", "--profile", "smoke", "--set", "sweep.seeds=[1099511627776]", "--dry-run"], "seeds must be in 0 .."),
    (["sweep", "--profile", "smoke", "--set", "train.lr=1", "--dry-run"], "unknown config key train"),
    (["fit", "--profile", "smoke", "--set", "fit.random_state=-1", "--table", "{tmp}/ladder.csv"],
     "fit.random_state must be in 0 .. 2^32 - 1"),
    (["notebooks", "--profile", "smoke", "--set", "notebooks=[]", "--out", "{tmp}/nb"], "notebooks is empty"),
    (["family", "ar32", "--layers", "100"], "defines L1-8, not L100"),
    # tables
    (["fit", "--profile", "smoke", "--table", "{tmp}/ladder.csv", "--columns", "n_params=n_params,value=n_params"],
     "'n_params' is given as both n_params and value"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/two-values.csv"], "repeated column name(s): 'value'"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/two-sizes.csv"], "repeated column name(s): 'n_params'"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/empty-variant.csv"], "(variant): row 2 is empty"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/huge.csv"], "row 2 is 1e+308, outside 1e-100 .. 1e+100"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/tiny.csv"], "row 2 is 1e-320, outside 1e-100 .. 1e+100"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/int-overflow.csv"], "row 1 is 9007199254740993, above 2^53"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/int-overflow-ints.csv"], "row 1 is 9007199254740993, above 2^53"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/header-only.csv"], "has no rows"),
    (["fit", "--profile", "smoke", "--table", "{tmp}/no-value.csv"],
     "the table has no value column (looked for value, loss,"),  # and the hint in command-line syntax:
    (["backtest", "--profile", "smoke", "--table", "{tmp}/no-value.csv"], "name it: --columns value=COLUMN on the"),
    (["backtest", "--profile", "smoke", "--table", "{tmp}/ladder.csv", "--protocol", "chinchilla"],
     "unknown backtest protocol 'chinchilla'"),
    # output paths
    (["runs", "--root", "{tmp}", "--export", "{tmp}"], "is a folder: give a file name"),
    (["notebooks", "--profile", "smoke", "--out", "{tmp}/a-file"], "is a file, not a folder"),
    (["notebooks", "--profile", "smoke", "--out", "/proc/no-such/out"], "is not writable"),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_a_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, capsys, argv, words):
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0 and "Traceback" not in out + err
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err


def test_an_unwritable_export_is_one_line(tmp_path, capsys):
    """`runs --export` into a folder that cannot be made (the store must hold a run to export)."""
    from workbench.config import load
    from workbench.execute.sweep import run_sweep

    study = load("smoke", ["sweep.layers=[1, 2]", "sweep.train.max_steps=10", "exec.workers=1"])
    run_sweep(study.sweep, tmp_path / "runs", study.exec)
    rc = main(["runs", "--root", str(tmp_path / "runs"), "--export", "/proc/no-such/runs.csv"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot be written" in err[0]


def test_a_store_whose_every_run_diverged_says_so(tmp_path, capsys):
    from workbench.config import load
    from workbench.execute.sweep import run_sweep

    sets = ["sweep.layers=[1]", "sweep.train.max_steps=20", "sweep.train.lr=1e6", "sweep.train.grad_clip=0",
            "exec.workers=1"]
    df = run_sweep(load("smoke", sets).sweep, tmp_path, load("smoke", sets).exec)
    assert (df.status == "diverged").all()
    rc = main(["fit", "--profile", "smoke", "--root", str(tmp_path), *[a for s in sets for a in ("--set", s)]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert rc == 2 and err == ["error: no completed runs: 1 diverged (lr 1e+06); nothing to fit (see each run's "
                               "summary.json)"]


def test_an_unreachable_ray_address_fails_in_seconds_naming_it():
    import time

    from workbench.base.errors import WorkbenchError
    from workbench.execute.raycluster import _reachable

    t0 = time.time()
    with pytest.raises(WorkbenchError, match=r"nothing answers at the Ray address 127\.0\.0\.1:1 \(Connection refused\)"):
        _reachable("127.0.0.1:1")
    with pytest.raises(WorkbenchError, match="is not host:port"):
        _reachable("just-a-name")
    assert time.time() - t0 < 10


def test_a_sweep_on_an_unreachable_ray_cluster_is_one_line_in_seconds(capsys, tmp_path):
    import time

    pytest.importorskip("ray")
    t0 = time.time()
    rc = main(["sweep", "--profile", "smoke", "--root", str(tmp_path), "--executor", "ray",
               "--ray-address", "127.0.0.1:1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert rc == 2 and err == ["error: nothing answers at the Ray address 127.0.0.1:1 (Connection refused): start "
                               "the cluster (`ray start --head`) or check --ray-address / $RAY_ADDRESS"]
    assert time.time() - t0 < 60  # data preparation included; the address check itself takes milliseconds


def test_every_command_has_help(capsys):
    """`--help` of the command and of each subcommand it lists prints its usage (argparse formats help
    strings with %, so one bare percent sign breaks the help of every command)."""
    import re

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    commands = re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out).group(1).split(",")
    assert {"sweep", "certify", "fit", "notebooks"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0, command
        assert f"usage: workbench {command}" in capsys.readouterr().out
