"""Which webhook events queue generation jobs, against a real Redis (embedded and REDIS_URL)."""

from __future__ import annotations

from redis import Redis
from rq import Queue

from alvar.backend.dispatcher import parse_event
from alvar.generator.jobs import generate_variations, generation_key
from alvar.generator.reaction import GenerationReaction
from alvar.label_config import load
from alvar.settings import GENERATION_QUEUE

CONFIG = load("annotate")


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def event(action: str, annotations: list[dict], tasks: list[dict], config: str | None = CONFIG) -> dict:
    many = action == "ANNOTATIONS_CREATED"
    return {"action": action, "project": {"id": 9, "label_config": config},
            "annotation": annotations if many else annotations[0], "task": tasks if many else tasks[0]}


def test_each_human_label_queues_one_job_and_nothing_else_does(redis_url: str) -> None:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue(GENERATION_QUEUE, connection=connection)
    react = GenerationReaction(connection, queue, job_timeout=123)
    tasks = [{"id": 1, "data": {"text": "my landlord kept my deposit"}},
             {"id": 2, "data": {"text": "a variation", "origin": "llm"}},
             {"id": 3, "data": {"text": "skipped one"}},
             {"id": 4, "data": {"text": "no label chosen"}},
             {"id": 5, "data": {"text": "the second human one"}}]
    annotations = [{"id": 11, "task": 1, "result": choice("legal-advice")},
                   {"id": 12, "task": 2, "result": choice("legal-advice")},
                   {"id": 13, "task": 3, "result": choice("discard"), "was_cancelled": True},
                   {"id": 14, "task": 4, "result": []},
                   {"id": 15, "task": 5, "result": choice("medical-advice")}]
    outcome = react(parse_event(event("ANNOTATIONS_CREATED", annotations, tasks)))["generation"]
    assert [item["status"] for item in outcome] == ["queued", "skipped", "skipped", "skipped", "queued"]
    assert "variation" in outcome[1]["reason"] and "skipped" in outcome[2]["reason"]
    first = queue.fetch_job(generation_key(9, 1, 11, "legal-advice"))
    assert first.func is generate_variations and first.timeout == 123 and first.retries_left == 3
    assert first.args == (9, 1, 11, "legal-advice", "my landlord kept my deposit")
    assert queue.count == 2

    again = react(parse_event(event("ANNOTATION_CREATED", annotations[:1], tasks[:1])))["generation"]
    assert again == [{"status": "already queued", "job_id": first.id}] and queue.count == 2

    relabelled = [{**annotations[0], "result": choice("financial-advice")}]
    updated = react(parse_event(event("ANNOTATION_UPDATED", relabelled, tasks[:1])))["generation"]
    assert updated == [{"status": "queued", "job_id": generation_key(9, 1, 11, "financial-advice")}]

    assert react(parse_event({"action": "TASKS_CREATED", "project": {"id": 9}})) is None
    no_config = react(parse_event(event("ANNOTATION_CREATED", annotations[:1], tasks[:1], config=None)))
    assert no_config["generation"] == "skipped" and "label config" in no_config["reason"]
    assert queue.count == 3
