"""An independent check of wxgate's tokens: PyJWT fetches the JWKS and verifies each token.

usage: pyjwt_verify.py JWKS_URL ISSUER TOKEN...
Prints one line per token: its "sub" when it verifies, else "REJECTED <exception name>".
The algorithm accepted for a token is the one its key is published with, never the token's.
"""

import sys

import jwt


def main() -> None:
    url, issuer, tokens = sys.argv[1], sys.argv[2], sys.argv[3:]
    client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False)
    for token in tokens:
        try:
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                issuer=issuer,
                options={"require": ["exp", "iss", "sub"]},
            )
            print(claims["sub"])
        except Exception as error:  # every failure is an answer here
            print("REJECTED", type(error).__name__)


if __name__ == "__main__":
    main()
