"""Structured answers: `answer.json()`, `answer.parse(Model)`, `response_format` passed through."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import pydantic
import pytest
from clients import call, run_stream

from backendapi import (
    Answer,
    AnswerParseError,
    BackendApiError,
    InvalidInputError,
    RawResponse,
)
from backendapi.testing import BackendApiTestServer, Reply

RECIPE = {
    "name": "Pancakes",
    "servings": 4,
    "steps": [{"text": "Mix", "minutes": 5}, {"text": "Fry", "minutes": 10}],
    "source": {"text": "Grandma", "minutes": 0},
    "by_name": {"rest": {"text": "Rest", "minutes": 30}},
    "pair": [{"text": "A", "minutes": 1}, "plain"],
}


def answer_of(text: str) -> Answer:
    """An answer whose text arrived as a model streams it: in small pieces."""
    answer = Answer()
    for start in range(0, len(text), 3):
        answer.add(RawResponse(type="content", content=text[start : start + 3]))
    return answer


# -- json() ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, 2], "b": null}',
        '\n  {"a": [1, 2], "b": null}  \n',
        '```json\n{"a": [1, 2], "b": null}\n```',
        '```JSON\n{"a": [1, 2], "b": null}\n```\n',
        'Here is the JSON you asked for:\n\n```json\n{"a": [1, 2], "b": null}\n```\nAnything else?',
        'First the code:\n```python\nprint("hi")\n```\nthen the data:\n```json\n{"a": [1, 2], "b": null}\n```',  # noqa: E501
        'Sure:\n```\n{"a": [1, 2], "b": null}\n```',
        '````json\n{"a": [1, 2], "b": null}\n````',
        # a stream cut before the closing fence
        '```json\n{"a": [1, 2], "b": null}\n',
    ],
    ids=[
        "bare",
        "whitespace",
        "fenced",
        "fenced-upper",
        "fenced-in-prose",
        "json-block-preferred",
        "unlabelled-block",
        "four-backticks",
        "unclosed-fence",
    ],
)
def test_json_parses_the_text_or_its_fenced_block(text: str) -> None:
    assert answer_of(text).json() == {"a": [1, 2], "b": None}


@pytest.mark.parametrize("text", ["[1, 2]", '"just a string"', "42", "true"])
def test_json_takes_any_json_value(text: str) -> None:
    assert answer_of(text).json() == json.loads(text)


def test_a_json_error_names_the_line_and_column_of_the_text() -> None:
    text = '{\n  "a": 1\n  "b": 2\n}'
    with pytest.raises(AnswerParseError) as caught:
        answer_of(text).json()
    error = caught.value
    assert (error.lineno, error.colno, error.pos) == (3, 3, text.index('"b"'))
    assert "Expecting ',' delimiter at line 3, column 3 (char 13) of the answer's text" in str(
        error
    )
    assert '"b": 2' in error.message  # the excerpt around the failure
    assert isinstance(error.__cause__, json.JSONDecodeError)


def test_a_json_error_in_a_fenced_block_is_placed_in_the_whole_text() -> None:
    text = 'Intro line\n\n```json\n{"a": 1,\n "b": }\n```\n'
    with pytest.raises(AnswerParseError) as caught:
        answer_of(text).json()
    error = caught.value
    bad = text.index("}\n```")
    assert (error.lineno, error.colno, error.pos) == (5, 7, bad)
    assert "line 5, column 7" in error.message
    assert "```json code block (from line 4)" in error.message


@pytest.mark.parametrize(
    "text",
    ["", "   \n", "Sorry, I cannot do that.", "```python\nprint(1)\n```"],
    ids=["empty", "blank", "prose", "no-json-block"],
)
def test_text_without_json_is_a_clear_error(text: str) -> None:
    with pytest.raises(AnswerParseError, match="the answer is no JSON"):
        answer_of(text).json()


def test_json_nested_too_deep_is_an_answer_parse_error_not_a_recursion_error() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(AnswerParseError, match="nested too deeply"):
        answer_of(text).json()


def test_answer_parse_error_is_a_value_error_and_survives_pickle() -> None:
    with pytest.raises(ValueError) as caught:
        answer_of("{oops}").json()
    error = caught.value
    assert isinstance(error, AnswerParseError) and isinstance(error, BackendApiError)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.message, copy.lineno, copy.colno) == (
        AnswerParseError,
        error.message,
        1,
        2,
    )


# -- parse(): pydantic, duck-typed models, dataclasses --------------------------------------


class Step(pydantic.BaseModel):
    text: str
    minutes: int


class PydanticRecipe(pydantic.BaseModel):
    name: str
    servings: int
    steps: List[Step]


def test_parse_a_pydantic_model() -> None:
    recipe = answer_of(f"```json\n{json.dumps(RECIPE)}\n```").parse(PydanticRecipe)
    assert isinstance(recipe, PydanticRecipe)
    assert recipe.steps[1] == Step(text="Fry", minutes=10)


def test_a_pydantic_validation_error_names_the_model_and_the_field() -> None:
    bad = {**RECIPE, "steps": [{"text": "Mix", "minutes": "a while"}]}
    with pytest.raises(AnswerParseError) as caught:
        answer_of(json.dumps(bad)).parse(PydanticRecipe)
    error = caught.value
    assert error.model == "PydanticRecipe"
    assert "does not fit PydanticRecipe" in error.message
    assert "steps.0.minutes" in error.message
    assert isinstance(error.__cause__, pydantic.ValidationError)


class ModelValidateOnly:
    """Any class with pydantic v2's classmethod will do."""

    def __init__(self, data: Any) -> None:
        self.data = data

    @classmethod
    def model_validate(cls, data: Any) -> ModelValidateOnly:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return cls(data)


class ParseObjOnly:
    """pydantic v1's spelling."""

    def __init__(self, data: Any) -> None:
        self.data = data

    @classmethod
    def parse_obj(cls, data: Any) -> ParseObjOnly:
        if "name" not in data:
            raise ValueError("name: field required")
        return cls(data)


@pytest.mark.parametrize("model", [ModelValidateOnly, ParseObjOnly])
def test_parse_uses_model_validate_else_parse_obj(model: Any) -> None:
    parsed = answer_of(json.dumps(RECIPE)).parse(model)
    assert isinstance(parsed, model) and parsed.data == RECIPE
    with pytest.raises(AnswerParseError, match=f"does not fit {model.__name__}") as caught:
        answer_of("[1]").parse(model)
    assert isinstance(caught.value.__cause__, (ValueError, TypeError))


@dataclass
class Stage:
    text: str
    minutes: int = 0


@dataclass
class Recipe:
    name: str
    servings: int
    steps: List[Stage]
    source: Optional[Stage] = None
    by_name: Dict[str, Stage] = field(default_factory=dict)
    pair: Tuple[Stage, str] = (Stage("x"), "y")
    tags: List[str] = field(default_factory=list)


def test_parse_a_dataclass_with_nested_dataclasses() -> None:
    recipe = answer_of(json.dumps({**RECIPE, "extra": "ignored"})).parse(Recipe)
    assert recipe == Recipe(
        name="Pancakes",
        servings=4,
        steps=[Stage("Mix", 5), Stage("Fry", 10)],
        source=Stage("Grandma", 0),
        by_name={"rest": Stage("Rest", 30)},
        pair=(Stage("A", 1), "plain"),
    )


def test_parse_a_dataclass_with_defaults_and_null() -> None:
    recipe = answer_of('{"name": "Tea", "servings": 1, "steps": [], "source": null}').parse(Recipe)
    assert recipe == Recipe("Tea", 1, [])


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"name": "Tea", "servings": 1}, "Recipe.steps is missing"),
        (
            {"name": "Tea", "servings": 1, "steps": [{"text": "Boil"}, {"minutes": 3}]},
            "Recipe.steps[1].text is missing",
        ),
        (
            {"name": "Tea", "servings": 1, "steps": ["boil"]},
            "Recipe.steps[0] should be an object, not a string",
        ),
        ([1, 2], "Recipe should be an object, not an array"),
    ],
)
def test_a_dataclass_that_does_not_fit_names_where(document: Any, where: str) -> None:
    with pytest.raises(AnswerParseError) as caught:
        answer_of(json.dumps(document)).parse(Recipe)
    assert caught.value.message == f"the answer's JSON does not fit Recipe: {where}"
    assert caught.value.model == "Recipe"


def test_parse_of_no_json_is_the_json_error() -> None:
    with pytest.raises(AnswerParseError, match="the answer is no JSON"):
        answer_of("no json here").parse(Recipe)


@pytest.mark.parametrize("model", [int, dict, Recipe(name="x", servings=1, steps=[]), "Recipe"])
def test_parse_refuses_what_is_no_model(model: Any) -> None:
    with pytest.raises(InvalidInputError, match="parse\\(\\) takes"):
        answer_of("{}").parse(model)


# -- response_format through both clients, from a real stream -------------------------------


def test_response_format_passes_through_and_the_streamed_answer_parses(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "recipe", "schema": PydanticRecipe.model_json_schema()},
    }
    backendapi_server.reply(Reply.answer("```json\n" + json.dumps(RECIPE, indent=1) + "\n```"))
    result = run_stream(client_kind, backendapi_server.url, "m", response_format=schema)
    assert result.error is None
    assert backendapi_server.requests[-1].json["response_format"] == schema
    answer = result.stream.answer
    assert answer.json() == RECIPE
    assert answer.parse(PydanticRecipe).name == "Pancakes"
    assert answer.parse(Recipe).steps[0] == Stage("Mix", 5)


def test_complete_with_json_object_format(
    client_kind: str, backendapi_server: BackendApiTestServer
) -> None:
    backendapi_server.reply(Reply.answer('{"answer": 42}'))
    answer = call(
        client_kind,
        backendapi_server.url,
        "complete",
        "m",
        [{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"},
    )
    assert backendapi_server.requests[-1].json["response_format"] == {"type": "json_object"}
    assert answer.json() == {"answer": 42}
