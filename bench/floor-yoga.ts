// The bare-Yoga floor of `npm run bench`: graphql-yoga over node:http with a one-field Query and a one-field
// Mutation, no database, no auth, no limits. Whatever the service costs beyond this is the service's own.
import { createServer } from "node:http";
import { createSchema, createYoga } from "graphql-yoga";

let counter = 0;
const yoga = createYoga({
  schema: createSchema({
    typeDefs: "type Query { hello: String! } type Mutation { bump: Int! }",
    resolvers: { Query: { hello: () => "world" }, Mutation: { bump: () => ++counter } },
  }),
  graphqlEndpoint: "/graphql",
  logging: false,
  landingPage: false,
  graphiql: false,
});
const server = createServer(yoga);
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}/graphql` })}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
