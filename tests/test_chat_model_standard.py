"""langchain-tests' chat-model unit tests for CaresChatModel wrapping a real ChatOpenAI client."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_openai")

from langchain_openai import ChatOpenAI  # noqa: E402
from langchain_tests.unit_tests import ChatModelUnitTests  # noqa: E402

from cares_integrations.langchain import CaresChatModel  # noqa: E402
from langchain_helpers import CountingRouter  # noqa: E402


class TestCaresChatModelUnit(ChatModelUnitTests):
    """The standard suite; the wrapped model is never called (unit tests do not touch the network)."""

    @property
    def chat_model_class(self) -> type[CaresChatModel]:
        return CaresChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model": ChatOpenAI(model="gpt-4o", api_key="test", base_url="http://127.0.0.1:9/v1"),
                "router": CountingRouter()}


def test_standard_params_reach_the_wrapped_model():
    inner = ChatOpenAI(model="gpt-4o", api_key="test", base_url="http://127.0.0.1:9/v1")
    llm = CaresChatModel(model=inner, router=CountingRouter(), temperature=0.0, max_tokens=7, stop=["x"])
    assert (llm.model.temperature, llm.model.max_tokens, llm.model.stop) == (0.0, 7, ["x"])
    assert inner.max_tokens is None  # the caller's model is not modified
    assert llm._get_ls_params()["ls_provider"] == "openai"
