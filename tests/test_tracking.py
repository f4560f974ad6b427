"""divsweep/tracking.py against a real SQLite MLflow store, with faults injected client-side."""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from divsweep import tracking


class LosesFirstCreateReply:
    """The real client, except that the first create_run lands and then its reply is lost,
    as when a connection drops between the server's commit and its answer."""

    def __init__(self, mlf: MlflowClient) -> None:
        self.mlf = mlf
        self.lost = False

    def __getattr__(self, name: str):
        return getattr(self.mlf, name)

    def create_run(self, *args, **kwargs):
        run = self.mlf.create_run(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise MlflowException(
                "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/create failed with "
                "exception ConnectionResetError(104, 'Connection reset by peer')"
            )
        return run


def key_runs(mlf: MlflowClient, exp_id: str, key: str) -> list:
    return mlf.search_runs([exp_id], filter_string=f"tags.`{tracking.KEY}` = '{key}'")


def test_lost_create_reply_is_retried_without_a_duplicate_run(tracking_uri: str) -> None:
    mlf = MlflowClient(tracking_uri)
    exp_id = tracking.experiment_id(mlf, "flaky")
    flaky = LosesFirstCreateReply(mlf)
    run_id = tracking.create_trial_run(flaky, exp_id, "k1", "t-k1", {"seed": "0"}, {})
    assert flaky.lost
    (run,) = key_runs(mlf, exp_id, "k1")
    assert run.info.run_id == run_id
    assert run.data.params == {"seed": "0"} and run.data.tags[tracking.STATUS] == "running"


def test_a_second_trial_of_the_same_key_gets_its_own_run(tracking_uri: str) -> None:
    # `divsweep train` twice on one config: two runs; only a retry reuses what it created
    mlf = MlflowClient(tracking_uri)
    exp_id = tracking.experiment_id(mlf, "twice")
    first = tracking.create_trial_run(mlf, exp_id, "k2", "t-k2", {}, {})
    second = tracking.create_trial_run(mlf, exp_id, "k2", "t-k2", {}, {})
    assert first != second and len(key_runs(mlf, exp_id, "k2")) == 2


def test_params_beyond_one_batch_of_100_are_all_logged(tracking_uri: str) -> None:
    mlf = MlflowClient(tracking_uri)
    exp_id = tracking.experiment_id(mlf, "wide")
    params = {f"p{i:03d}": str(i) for i in range(250)}
    run_id = tracking.create_trial_run(mlf, exp_id, "k3", "t-k3", params, {})
    assert mlf.get_run(run_id).data.params == params


def test_experiments_open_on_their_runs_in_the_mlflow_ui(tracking_uri: str) -> None:
    mlf = MlflowClient(tracking_uri)
    new = tracking.experiment_id(mlf, "made-by-divsweep")
    older = mlf.create_experiment("made-before")  # by hand, or by an older divsweep
    assert tracking.experiment_id(mlf, "made-before") == older
    for exp_id in (new, older):
        tags = mlf.get_experiment(exp_id).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"
    # a kind someone chose is theirs: only an absent one is set
    mlf.set_experiment_tag(older, tracking.EXPERIMENT_KIND, "genai_development")
    tracking.experiment_id(mlf, "made-before")
    assert mlf.get_experiment(older).tags[tracking.EXPERIMENT_KIND] == "genai_development"
