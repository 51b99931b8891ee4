"""An independent check of wxgate's tokens: PyJWT fetches the JWKS and verifies each token.

usage: pyjwt_verify.py JWKS_URL ISSUER [--assertion AUDIENCE] TOKEN...
Prints one line per token: its "sub" when it verifies, else "REJECTED <reason>".
The algorithm accepted for a token is the one its key is published with, never the token's.
With --assertion, the tokens are identity assertions, checked as a backend checks them: the `typ`
header `wxgate-assertion+jwt` and the audience are required too.
"""

import sys

import jwt

ASSERTION_TYPE = "wxgate-assertion+jwt"


def main() -> None:
    url, issuer, tokens = sys.argv[1], sys.argv[2], sys.argv[3:]
    audience = None
    if tokens[:1] == ["--assertion"]:
        audience, tokens = tokens[1], tokens[2:]
    client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False)
    required = ["exp", "iss", "sub"] + (["aud"] if audience else [])
    for token in tokens:
        try:
            if audience and jwt.get_unverified_header(token).get("typ") != ASSERTION_TYPE:
                print("REJECTED not an assertion")
                continue
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                issuer=issuer,
                audience=audience,
                options={"require": required},
            )
            print(claims["sub"])
        except Exception as error:  # every failure is an answer here
            print("REJECTED", type(error).__name__)


if __name__ == "__main__":
    main()
