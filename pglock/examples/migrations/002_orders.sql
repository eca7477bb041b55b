CREATE TABLE orders (id bigserial PRIMARY KEY, account bigint NOT NULL REFERENCES accounts, total numeric NOT NULL);
