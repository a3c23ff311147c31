"""Python's grpcio with its DEFAULT settings (4 MiB to receive) against an Accord
node, with no generated code: message types come from the node's server reflection,
asked through grpc.reflection.v1alpha (what grpcio-reflection, grpcurl and Postman
use).

Usage: grpcio_limits.py HOST:PORT TOKEN AUTHOR_HEX
Prints the services, how many statements and log entries it read in how many pages,
and the code and length of the refusal of a 100 kB ballot id.
"""
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target, token, author_hex = sys.argv[1:4]
    metadata = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        print("services " + " ".join(services))
        pool = descriptor_pool.DescriptorPool(database)

        def message(name):
            return message_factory.GetMessageClass(
                pool.FindMessageTypeByName(f"accord.v1.{name}")
            )

        def method(name, request, response):
            return channel.unary_unary(
                f"/accord.v1.Ledger/{name}",
                request_serializer=message(request).SerializeToString,
                response_deserializer=message(response).FromString,
            )

        def pages(name, request, response, field, **fields):
            call = method(name, request, response)
            items, count, token_ = [], 0, ""
            for _ in range(1000):
                page = call(
                    message(request)(page_token=token_, **fields),
                    metadata=metadata,
                    timeout=30,
                )
                count += 1
                items.extend(getattr(page, field))
                token_ = page.next_page_token
                if not token_:
                    return items, count
            raise SystemExit(f"{name}: no last page")

        statements, n = pages(
            "ListStatements", "ListStatementsRequest", "ListStatementsResponse", "statements"
        )
        print(f"statements {len(statements)} in {n} pages")
        log, n = pages(
            "GetLog",
            "GetLogRequest",
            "GetLogResponse",
            "entries",
            author=bytes.fromhex(author_hex),
        )
        print(f"log {len(log)} in {n} pages")

        intends = pool.FindEnumTypeByName("accord.v1.IntentionStatus").values_by_name[
            "INTENTION_STATUS_INTENDS"
        ].number
        request = message("PublishRequest")(author=bytes.fromhex(author_hex))
        request.intention.ballot = "local." + "A" * 100_000 + ".2027-05-06"
        request.intention.status = intends
        publish = method("Publish", "PublishRequest", "PublishResponse")
        try:
            publish(request, metadata=metadata, timeout=30)
            raise SystemExit("a 100 kB ballot id was accepted")
        except grpc.RpcError as e:
            if len(e.details() or "") > 1000:
                raise SystemExit(f"refusal of {len(e.details())} characters")
            print(f"huge ballot {e.code().name} {len(e.details() or '')}: {e.details()[:80]}")


if __name__ == "__main__":
    main()
